// Screenshot each workflow as the page shows it (loaded, fitted to the view) for its template thumbnail.
// Request: {url, out, workflows: [{name, path}]}; writes <out>/<name>.png, the graph and a margin around it.
import fs from "node:fs";

const MARGIN = 24;

export default async function (request, helpers) {
  const { page } = await helpers.openComfy(helpers.context, request.url, { vueNodes: false });
  const shots = [];
  for (const workflow of request.workflows) {
    const graph = JSON.parse(fs.readFileSync(workflow.path, "utf8"));
    await helpers.clearGraph(page);
    await page.evaluate(([graph, name]) => window.app.loadGraphData(graph, true, true, name), [graph, workflow.name]);
    await helpers.settle(page);
    // Fit the graph by hand (the FitView command animates on newer frontends), clear of the page's toolbars.
    const box = await page.evaluate((margin) => {
      const canvas = window.app.canvas;
      const element = canvas.canvas;
      const title = window.LiteGraph.NODE_TITLE_HEIGHT;
      let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
      for (const node of window.app.graph.nodes) {
        x0 = Math.min(x0, node.pos[0]); y0 = Math.min(y0, node.pos[1] - title);
        x1 = Math.max(x1, node.pos[0] + node.size[0]); y1 = Math.max(y1, node.pos[1] + node.size[1]);
      }
      const area = { left: 80, top: 120, width: element.clientWidth - 160, height: element.clientHeight - 200 };
      const scale = Math.min(area.width / (x1 - x0), area.height / (y1 - y0), 1.5);
      canvas.ds.scale = scale;
      canvas.ds.offset = [(area.left + (area.width - scale * (x1 - x0)) / 2) / scale - x0,
        (area.top + (area.height - scale * (y1 - y0)) / 2) / scale - y0];
      canvas.setDirty(true, true);
      const rect = element.getBoundingClientRect();
      const toPage = ([x, y]) => [(x + canvas.ds.offset[0]) * scale + rect.left,
        (y + canvas.ds.offset[1]) * scale + rect.top];
      const [left, top] = toPage([x0, y0]), [right, bottom] = toPage([x1, y1]);
      return { left: left - margin, top: top - margin, right: right + margin, bottom: bottom + margin };
    }, MARGIN);
    await helpers.settle(page, 300);
    const viewport = page.viewportSize();
    const x = Math.max(0, box.left), y = Math.max(0, box.top);
    const clip = { x, y, width: Math.min(viewport.width, box.right) - x,
      height: Math.min(viewport.height, box.bottom) - y };
    const file = `${request.out}/${workflow.name}.png`;
    await page.screenshot({ path: file, clip });
    shots.push(file);
  }
  return { shots };
}
