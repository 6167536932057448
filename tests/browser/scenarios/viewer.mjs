// The splat viewer inside a node: queue a node that reports a known scene as `dimx_scene`, wait for the view,
// screenshot it, then orbit / zoom / reset with the mouse and step through time for 4D.
import { addNode, waitForState } from "./common.mjs";

const VIEW = ".dimx-viewer";

async function shoot(page, out, name) {
  const file = `${out}/${name}.png`;
  await page.locator(`${VIEW} canvas`).screenshot({ path: file });
  return file;
}

async function graphState(page) {
  return page.evaluate(() => {
    const node = window.app.graph.nodes[0];
    return { scale: window.app.canvas.ds.scale, offset: [...window.app.canvas.ds.offset], pos: [...node.pos] };
  });
}

async function viewerInfo(page) {
  return page.evaluate((selector) => {
    const view = document.querySelector(selector);
    const canvas = view.querySelector("canvas");
    return { ...view.dataset, status: view.querySelector(".dimx-status").textContent,
      notice: view.querySelector(".dimx-notice").textContent, error: view.querySelector(".dimx-error").textContent,
      canvas: [canvas.clientWidth, canvas.clientHeight], pixels: [canvas.width, canvas.height] };
  }, VIEW);
}

async function runCase(page, helpers, request, spec) {
  await helpers.clearGraph(page);
  await addNode(page, "DimxTestSceneSource", { size: [560, 520],
    values: { kind: spec.kind, cameras: spec.cameras, splats_per_cluster: spec.splats } });
  await helpers.settle(page, 200);
  await page.evaluate(() => {  // every splat count the view reports while the file streams in
    window.dimxSplatCounts = [];
    new MutationObserver((changes) => changes.forEach((c) => window.dimxSplatCounts.push(c.target.dataset.splats)))
      .observe(document.body, { subtree: true, attributeFilter: ["data-splats"] });
  });
  await helpers.pressQueue(page);
  const state = await waitForState(page, VIEW, ["ready", "error"], 120_000);
  const result = { name: spec.name, state, info: await viewerInfo(page), shots: {},
    splatCounts: await page.evaluate(() => window.dimxSplatCounts.map(Number)) };
  if (state !== "ready") return result;
  const out = request.out;
  result.shots.initial = await shoot(page, out, `viewer-${spec.name}`);
  const box = await page.locator(`${VIEW} canvas`).boundingBox();
  const centre = [box.x + box.width / 2, box.y + box.height / 2];

  if (spec.interact) {
    const before = await graphState(page);
    await page.mouse.move(...centre);
    await page.mouse.down({ button: "right" });
    await page.mouse.move(centre[0] - 40, centre[1] + 20, { steps: 6 });
    await page.mouse.move(centre[0] - 80, centre[1] + 40, { steps: 6 });
    await page.mouse.up({ button: "right" });
    await waitForState(page, VIEW, ["ready"]);
    result.shots.panned = await shoot(page, out, `viewer-${spec.name}-panned`);
    await page.locator(`${VIEW} .dimx-reset`).click();
    await waitForState(page, VIEW, ["ready"]);
    await page.mouse.move(...centre);
    await page.mouse.wheel(0, -500);
    await waitForState(page, VIEW, ["ready"]);
    result.shots.zoomed = await shoot(page, out, `viewer-${spec.name}-zoomed`);
    await page.mouse.move(...centre);
    await page.mouse.down();
    await page.mouse.move(centre[0] + 60, centre[1], { steps: 6 });
    await page.mouse.move(centre[0] + 120, centre[1] + 30, { steps: 6 });
    await page.mouse.up();
    await waitForState(page, VIEW, ["ready"]);
    result.shots.orbited = await shoot(page, out, `viewer-${spec.name}-orbited`);
    await page.locator(`${VIEW} .dimx-reset`).click();
    await waitForState(page, VIEW, ["ready"]);
    result.shots.reset = await shoot(page, out, `viewer-${spec.name}-reset`);
    result.graphBefore = before;
    result.graphAfter = await graphState(page);
  }
  if (spec.zoomOut) {  // look down on the camera arc from above and further away
    await page.mouse.move(...centre);
    await page.mouse.down();
    await page.mouse.move(centre[0], centre[1] + 75, { steps: 5 });
    await page.mouse.move(centre[0], centre[1] + 150, { steps: 5 });
    await page.mouse.up();
    await page.mouse.move(...centre);
    await page.mouse.wheel(0, 1200);
    await waitForState(page, VIEW, ["ready"]);
    result.shots.zoomedOut = await shoot(page, out, `viewer-${spec.name}-zoomed-out`);
  }
  if (spec.kind === "4d") {
    await page.locator(`${VIEW} .dimx-time`).fill("1");
    await page.waitForFunction((s) => document.querySelector(s).dataset.frame === "1", VIEW);
    await waitForState(page, VIEW, ["ready"]);
    result.shots.step1 = await shoot(page, out, `viewer-${spec.name}-t1`);
    result.timeLabel = await page.locator(`${VIEW} .dimx-time-label`).textContent();
    await page.locator(`${VIEW} .dimx-play`).click();
    await page.waitForFunction((s) => document.querySelector(s).dataset.frame === "0", VIEW, { timeout: 10_000 });
    result.playedBackToStart = true;
    await page.locator(`${VIEW} .dimx-play`).click();
    result.playingAfterPause = await page.evaluate((s) => document.querySelector(s).dataset.playing, VIEW);
  }
  await page.screenshot({ path: `${out}/viewer-${spec.name}-page.png` });
  return result;
}

export default async function (request, helpers) {
  const { page, log, frontend } = await helpers.openComfy(helpers.context, request.url,
    { vueNodes: request.vueNodes, settings: request.settings });
  const mark = log.mark();
  const webgl = await page.evaluate(() => {
    const gl = document.createElement("canvas").getContext("webgl2");
    return gl ? gl.getParameter(gl.VERSION) : null;
  });
  const cases = [];
  for (const spec of request.cases) cases.push(await runCase(page, helpers, request, spec));
  return { frontend, webgl, cases, errors: log.since(mark) };
}
