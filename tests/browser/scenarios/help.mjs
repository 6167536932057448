// Open each node's help page the way a person does: click the node, then the (i) button of the selection
// toolbox; report whether the text of js/docs/<NodeId>.md shows in the help panel.
import { addNode } from "./common.mjs";

export default async function (request, helpers) {
  const { page, log, frontend } = await helpers.openComfy(helpers.context, request.url, { vueNodes: request.vueNodes });
  const mark = log.mark();
  const results = [];
  for (const { id, expect } of request.nodes) {
    await helpers.clearGraph(page);
    const nodeId = await addNode(page, id, { pos: [400, 300] });
    await helpers.settle(page, 300);
    const title = await page.evaluate((nodeId) => {
      const node = window.app.graph.getNodeById(nodeId);
      return [node.pos[0] + node.size[0] / 2, node.pos[1] - window.LiteGraph.NODE_TITLE_HEIGHT / 2];
    }, nodeId);
    await page.mouse.click(...(await helpers.graphToPage(page, title)));
    const info = page.locator('.selection-toolbox button:has(i[class*="lucide--info"])').filter({ visible: true });
    await info.first().click({ timeout: 10_000 });
    const shown = await page.waitForFunction((text) => document.body.innerText.includes(text), expect,
      { timeout: 10_000 }).then(() => true, () => false);
    await page.screenshot({ path: `${request.out}/help-${id}.png` });
    results.push({ id, shown });
    await page.keyboard.press("Escape");
  }
  return { frontend, results, errors: log.since(mark) };
}
