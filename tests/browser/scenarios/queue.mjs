// Load a workflow, press the page's Queue/Run button and wait for the text report to appear inside the node.
export default async function (request, helpers) {
  const { page, log, frontend } = await helpers.openComfy(helpers.context, request.url, { vueNodes: request.vueNodes });
  await helpers.clearGraph(page);
  await helpers.loadTemplate(page, request.workflow, request.nodeCount, request.pack);
  await helpers.fitView(page);
  const mark = log.mark();
  await helpers.pressQueue(page);
  await page.waitForFunction(() => document.querySelector("textarea.dimx-text-report")?.value.length > 0, null,
    { timeout: 120_000 });
  await helpers.settle(page);
  const report = await page.evaluate(() => {
    const area = document.querySelector("textarea.dimx-text-report");
    const rect = area.getBoundingClientRect();
    return { text: area.value, visible: rect.width > 50 && rect.height > 50 && area.checkVisibility?.() !== false };
  });
  await page.screenshot({ path: `${request.out}/queue-${request.workflow}.png` });
  return { frontend, ...report, errors: log.since(mark) };
}
