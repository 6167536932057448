// Load every example workflow through the template browser, as a person would, and report what the page saw:
// the template card and its thumbnail, missing node types, refused widget values, console errors. The workflow
// named by request.run is then run with the page's Run/Queue button until its text report shows in the node.

async function runFromPage(page, helpers, log, out, name) {
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
  await page.screenshot({ path: `${out}/run-${name}.png` });
  return { name, ...report, errors: log.since(mark) };
}

export default async function (request, helpers) {
  const { page, log, frontend } = await helpers.openComfy(helpers.context, request.url, { vueNodes: request.vueNodes });
  const bootErrors = log.since(0);
  const results = [];
  let run = null;
  for (const workflow of request.workflows) {
    await helpers.clearGraph(page);
    const mark = log.mark();
    const template = await helpers.loadTemplate(page, workflow.name, workflow.nodeCount, request.pack);
    await helpers.fitView(page);
    const problems = await helpers.graphProblems(page);
    const types = await page.evaluate(() => window.app.graph.nodes.map((n) => n.type).sort());
    const screenshot = `${request.out}/workflow-${workflow.name}.png`;
    await page.screenshot({ path: screenshot });
    results.push({ name: workflow.name, ...template, types, ...problems, errors: log.since(mark), screenshot });
    if (workflow.name === request.run) run = await runFromPage(page, helpers, log, request.out, workflow.name);
  }
  return { frontend, bootErrors, results, run };
}
