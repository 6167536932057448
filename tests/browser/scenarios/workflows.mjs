// Load every example workflow through the template browser, as a person would, and report what the page saw:
// the template card and its thumbnail, missing node types, refused widget values, console errors.
export default async function (request, helpers) {
  const { page, log, frontend } = await helpers.openComfy(helpers.context, request.url, { vueNodes: request.vueNodes });
  const bootErrors = log.since(0);
  const results = [];
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
  }
  return { frontend, bootErrors, results };
}
