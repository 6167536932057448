// The trajectory preview. Two parts, chosen by request.part:
//  "draw": the drawing function alone on a test page, fed a known trajectory (no ComfyUI involved);
//  "live": the real DimensionXTrajectoryPlanner node and its route in the real frontend.
import { addNode, incrementWidget, waitForState } from "./common.mjs";

const PREVIEW = ".dimx-trajectory";
const PLANNER = "DimensionXTrajectoryPlanner";

async function drawAlone(request, helpers) {
  const page = await helpers.context.newPage();
  const log = new helpers.ConsoleLog(page);
  const pageUrl = `${request.url}/dimx-test/trajectory.html`;
  await page.route(pageUrl, (route) => route.fulfill({ contentType: "text/html",
    body: '<!doctype html><body style="margin:0"><canvas id="c" width="480" height="320"></canvas></body>' }));
  await page.goto(pageUrl);
  const projected = await page.evaluate(async ({ module, trajectory }) => {
    const { drawTrajectory } = await import(module);
    const ctx = document.getElementById("c").getContext("2d");
    const project = drawTrajectory(ctx, 480, 320, trajectory);
    return { centres: trajectory.c2w_opencv.map((m) => project([m[0][3], m[1][3], m[2][3]])),
      pivot: trajectory.pivot ? project(trajectory.pivot) : null };
  }, { module: `/extensions/${request.pack}/lib/trajectory_draw.js`, trajectory: request.trajectory });
  const shot = `${request.out}/trajectory-draw.png`;
  await page.locator("#c").screenshot({ path: shot });
  return { projected, shot, errors: log.since(0) };
}

async function previewShot(page, out, name) {
  const file = `${out}/${name}.png`;
  await page.locator(`${PREVIEW} canvas`).screenshot({ path: file });
  const projected = await page.evaluate(({ selector }) => {
    const preview = document.querySelector(selector).dimxPreview;
    const path = preview.result;
    return { centres: path.c2w_opencv.map((m) => preview.project([m[0][3], m[1][3], m[2][3]])),
      pivot: path.pivot ? preview.project(path.pivot) : null, query: document.querySelector(selector).dataset.query };
  }, { selector: PREVIEW });
  return { file, ...projected };
}

async function inNode(request, helpers) {
  const queries = [];
  await helpers.context.route(/\/dimensionx\/trajectory\?/, async (route) => {
    queries.push(Object.fromEntries(new URL(route.request().url()).searchParams));
    await route.continue();
  });
  const { page, log, frontend } = await helpers.openComfy(helpers.context, request.url, { vueNodes: request.vueNodes });
  const mark = log.mark();
  await helpers.clearGraph(page);
  const id = await addNode(page, PLANNER, { size: [520, 560] });
  const result = { frontend, shots: {} };
  result.firstState = await waitForState(page, PREVIEW, ["drawn", "error"]);
  if (result.firstState !== "drawn") {
    result.errorText = await page.locator(`${PREVIEW} .dimx-trajectory-error`).textContent();
    return { ...result, queries, errors: log.since(mark) };
  }
  result.widgets = await page.evaluate((id) => window.app.graph.getNodeById(id).widgets
    .map((w) => ({ name: w.name, type: w.type, value: w.value })), id);
  result.shots.initial = await previewShot(page, request.out, `trajectory-${request.part}-initial`);
  // a widget at 0 means "the connected model's" (frames, width, height): one step up is no valid value
  const stepped = result.widgets.find((w) => typeof w.value === "number" &&
    Number.isInteger(w.value) && w.value > 0)?.name;
  if (stepped) {
    await incrementWidget(page, helpers, id, stepped, request.vueNodes);
    await page.waitForFunction(({ selector, query }) => {
      const element = document.querySelector(selector);
      return element.dataset.state === "drawn" && element.dataset.query !== query;
    }, { selector: PREVIEW, query: result.shots.initial.query }, { timeout: 15_000 });
    result.stepped = stepped;
    result.shots.stepped = await previewShot(page, request.out, `trajectory-${request.part}-stepped`);
  }
  // An unacceptable value (what an old saved workflow may hold) must show the server's reason in the node.
  const combo = result.widgets.find((w) => typeof w.value === "string")?.name;
  if (combo) {
    await page.evaluate(({ id, name, value }) => {
      const widget = window.app.graph.getNodeById(id).widgets.find((w) => w.name === name);
      widget.value = value;
      widget.callback?.(value);
    }, { id, name: combo, value: "not-a-valid-value" });
    result.badState = await waitForState(page, PREVIEW, ["error"], 15_000);
    result.errorText = await page.locator(`${PREVIEW} .dimx-trajectory-error`).textContent();
    await page.locator(PREVIEW).screenshot({ path: `${request.out}/trajectory-${request.part}-error.png` });
  }
  await page.screenshot({ path: `${request.out}/trajectory-${request.part}-page.png` });
  return { ...result, queries, errors: log.since(mark) };
}

export default async function (request, helpers) {
  return request.part === "draw" ? drawAlone(request, helpers) : inNode(request, helpers);
}
