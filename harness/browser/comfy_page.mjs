// Drives the real ComfyUI page in Debian's chromium through playwright-core (no browser download).
// Used by the browser tests and by the thumbnail script; every helper works on the frontend shipped with
// ComfyUI 0.3.75 (1.32.x) and on the newest one, in the classic canvas and in Vue ("nodes 2.0") mode.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.DIMX_CHROMIUM || "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  // WebGL2 without a GPU: ANGLE on SwiftShader (CPU).
  "--use-angle=swiftshader", "--enable-unsafe-swiftshader"];
export const VIEWPORT = { width: 1400, height: 900 };
const READY_TIMEOUT = 90_000;

/** A fresh chromium with its own throw-away profile. */
export async function launch({ viewport = VIEWPORT } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "dimx-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: FLAGS, viewport,  // the profile is its --user-data-dir
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Console errors and uncaught exceptions of a page, with marks to ask "what happened since". */
export class ConsoleLog {
  constructor(page) {
    this.entries = [];
    page.on("console", (message) => {
      if (message.type() === "error") {
        const where = message.location()?.url ?? "";
        this.entries.push({ kind: "console.error", text: message.text(), where });
      }
    });
    page.on("pageerror", (error) => this.entries.push({ kind: "exception", text: String(error.stack ?? error) }));
  }

  mark() {
    return this.entries.length;
  }

  since(mark) {
    return this.entries.slice(mark);
  }
}

export async function putSettings(url, settings) {
  const response = await fetch(`${url}/api/settings`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(settings),
  });
  if (!response.ok) throw new Error(`POST /api/settings answered ${response.status}`);
}

/**
 * Open the ComfyUI page at `url` with a clean workspace, in classic (`vueNodes` false) or Vue node mode, and wait
 * until the app and the pack's extensions are up. The page stays offline: requests to other hosts get an
 * empty answer, so that update checks cannot fail or hang.
 */
export async function openComfy(context, url, { vueNodes = false, settings = {} } = {}) {
  await putSettings(url, {
    "Comfy.TutorialCompleted": true,
    "Comfy.VueNodes.Enabled": vueNodes,
    "Comfy.RightSidePanel.IsOpen": false,
    "Comfy.Minimap.Visible": false,
    ...settings,
  });
  await context.route((target) => !target.href.startsWith(url), (route) =>
    route.fulfill({ status: 200, contentType: "application/json", body: "[]" }));
  const page = context.pages()[0] ?? (await context.newPage());
  const log = new ConsoleLog(page);
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => {
    const app = window.app;
    return app?.graph && app?.canvas && app.extensions?.some?.((e) => e.name === "DimensionX.SplatViewer");
  }, null, { timeout: READY_TIMEOUT });
  await settle(page);
  await page.keyboard.press("Escape");
  const frontend = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null);
  return { page, log, frontend };
}

/** Wait for the network to go quiet and a few frames to render. */
export async function settle(page, quietMs = 500) {
  await page.waitForLoadState("networkidle", { timeout: 15_000 }).catch(() => {});
  await page.waitForTimeout(quietMs);
}

export async function command(page, id) {
  await page.evaluate((name) => window.app.extensionManager.command.execute(name), id);
}

/** Start from an empty graph (the default workflow would otherwise sit under everything). */
export async function clearGraph(page) {
  await page.evaluate(() => {
    window.app.graph.clear();
    window.app.canvas.setDirty(true, true);
  });
}

/**
 * Open the template browser, find the pack's workflow `name` (in the pack's own category when the frontend lists
 * one, else by searching), report its card and thumbnail, and load it by clicking the card, as a person would.
 */
export async function loadTemplate(page, name, nodeCount, pack) {
  const thumbnailRequests = [];
  const watch = (response) => {
    if (response.url().includes(`/workflow_templates/${pack}/${name}.jpg`)) {
      thumbnailRequests.push({ url: response.url(), status: response.status() });
    }
  };
  page.on("response", watch);
  await command(page, "Comfy.BrowseTemplates");
  const dialog = page.locator('[role="dialog"]').filter({ has: page.locator('input[placeholder*="earch" i]') });
  await dialog.first().waitFor({ timeout: 20_000 });
  // Cards appear once the template lists (core and custom nodes') have loaded; only then is the nav complete.
  await page.locator('[data-testid^="template-workflow-"]').first().waitFor({ timeout: 20_000 });
  const category = dialog.locator(`nav :text-is("${pack}"), [role="navigation"] :text-is("${pack}"), ` +
    `aside :text-is("${pack}")`).first();
  if (await category.count()) {
    await category.click();  // 1.32 loads custom-node thumbnails only in their own category
  } else {
    await dialog.locator('input[placeholder*="earch" i]').first().fill(name);
  }
  const testId = `template-workflow-${name}`;
  const card = page.locator(`[data-testid="${testId}"]`).first();
  await card.waitFor({ timeout: 20_000 });
  await card.scrollIntoViewIfNeeded();  // cards load their thumbnails only once they are on screen
  await page.waitForFunction((id) => {
    const images = [...document.querySelectorAll(`[data-testid="${id}"] img`)];
    return images.length > 0 && images.every((img) => img.complete);
  }, testId, { timeout: 20_000 }).catch(() => {});
  const thumbnails = await card.locator("img").evaluateAll((images) =>
    images.map((img) => ({ src: img.currentSrc || img.src, width: img.naturalWidth, height: img.naturalHeight })));
  page.off("response", watch);
  await card.click();
  await page.waitForFunction((count) => window.app.graph.nodes.length === count &&
    !document.querySelector('[data-testid^="template-workflow-"]'), nodeCount, { timeout: 20_000 });
  await settle(page);
  return { thumbnails, thumbnailRequests };
}

/** Fit the whole graph into the canvas. */
export async function fitView(page) {
  await command(page, "Comfy.Canvas.FitView");
  await settle(page, 300);
}

/** What is wrong with the loaded graph as the frontend sees it: unknown node types, widget values it refuses. */
export async function graphProblems(page) {
  return page.evaluate(() => {
    const registered = window.LiteGraph.registered_node_types;
    const missing = [], badValues = [];
    for (const node of window.app.graph.nodes) {
      if (!registered[node.type]) missing.push(node.type);
      for (const widget of node.widgets ?? []) {
        const options = widget.options ?? {};
        const values = typeof options.values === "function" ? options.values() : options.values;
        if (Array.isArray(values) && !values.includes(widget.value)) {
          badValues.push(`${node.type}.${widget.name}=${JSON.stringify(widget.value)} not in the choices`);
        } else if (typeof widget.value === "number" && ((options.min !== undefined && widget.value < options.min) ||
            (options.max !== undefined && widget.value > options.max))) {
          badValues.push(`${node.type}.${widget.name}=${widget.value} outside [${options.min}, ${options.max}]`);
        }
      }
    }
    const dialogs = [...document.querySelectorAll('[role="dialog"]')].map((d) => d.innerText).filter((text) =>
      /missing/i.test(text));
    return { missing, badValues, missingDialogs: dialogs };
  });
}

/** Page coordinates of a point given in graph (canvas) coordinates. */
export async function graphToPage(page, point) {
  return page.evaluate(([x, y]) => {
    const [cx, cy] = window.app.canvas.ds.convertOffsetToCanvas([x, y]);
    const rect = window.app.canvas.canvas.getBoundingClientRect();
    return [cx + rect.left, cy + rect.top];
  }, point);
}

/** Press the page's Queue / Run button. */
export async function pressQueue(page) {
  // 1.32 wraps its Run split-button in the test id; newer frontends put the id on the button itself.
  const button = page
    .locator('button[data-testid="queue-button"], [data-testid="queue-button"] button.p-button-primary')
    .filter({ visible: true });
  await button.first().click();
}
