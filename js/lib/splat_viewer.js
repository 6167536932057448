// The interactive splat view: a canvas with orbit/pan/zoom, reset, camera frustums, progressive loading with a
// splat cap, and a time slider + play button for 4D scenes. Knows nothing of ComfyUI: the extension gives it
// a DOM slot and a function that turns {filename, subfolder, type} into a URL.
import { element, injectStyle } from "./dom.js";
import { add, columns, normalize, scale, sub } from "./math3d.js";
import { DEFAULT_FOV_Y, OrbitCamera } from "./orbit_camera.js";
import { fetchJson, parseManifest, parseTransforms, SceneError, streamPly } from "./scene_source.js";
import { SplatRenderer } from "./splat_renderer.js";

export const DEFAULT_MAX_SPLATS = 2_000_000;
const FIT_SAMPLES = 20000;
const PLAY_FPS = 8;
const FIRST_CAMERA_RGB = [1.0, 0.55, 0.1];
const CAMERA_RGB = [0.35, 0.8, 1.0];
const PATH_RGB = [0.85, 0.85, 0.85];

let sortWorker = null;
const sortListeners = new Map();
let nextSceneId = 1;

function sorter() {
  if (!sortWorker) {
    sortWorker = new Worker(new URL("./sort_worker.js", import.meta.url), { type: "module" });
    sortWorker.onmessage = ({ data }) => sortListeners.get(data.set)?.(data);
  }
  return sortWorker;
}

const STYLE = `
.dimx-viewer { position: relative; width: 100%; height: 100%; min-height: 240px; overflow: hidden;
  background: rgb(28, 28, 33); border-radius: 4px; font: 12px sans-serif; color: #ddd; user-select: none;
  outline: none; }
.dimx-viewer canvas { position: absolute; inset: 0; width: 100%; height: 100%; display: block; cursor: grab;
  touch-action: none; }
.dimx-viewer .dimx-info { position: absolute; left: 6px; top: 4px; right: 90px; pointer-events: none;
  text-shadow: 0 0 3px #000; }
.dimx-viewer .dimx-notice { color: #ffcc55; }
.dimx-viewer .dimx-error { color: #ff7070; white-space: pre-wrap; }
.dimx-viewer button { background: rgba(40, 40, 48, 0.85); color: #eee; border: 1px solid #555; border-radius: 3px;
  font: 12px sans-serif; padding: 2px 6px; cursor: pointer; }
.dimx-viewer .dimx-reset { position: absolute; right: 4px; top: 4px; }
.dimx-viewer .dimx-timebar { position: absolute; left: 4px; right: 4px; bottom: 4px; display: flex; gap: 6px;
  align-items: center; background: rgba(20, 20, 24, 0.7); padding: 2px 4px; border-radius: 3px; }
.dimx-viewer .dimx-timebar input { flex: 1; }
`;

/** Robust centre and radius (5th-95th percentile box) of a stride sample of the loaded splat centres. */
function robustBounds(positions, count) {
  const step = Math.max(1, Math.floor(count / FIT_SAMPLES));
  const axes = [[], [], []];
  for (let i = 0; i < count; i += step) for (let a = 0; a < 3; a++) axes[a].push(positions[3 * i + a]);
  const low = [], high = [];
  for (const values of axes) {
    values.sort((x, y) => x - y);
    low.push(values[Math.floor(0.05 * (values.length - 1))]);
    high.push(values[Math.ceil(0.95 * (values.length - 1))]);
  }
  const center = scale(add(low, high), 0.5);
  const radius = Math.max(1e-3, 0.5 * Math.hypot(high[0] - low[0], high[1] - low[1], high[2] - low[2]));
  return { center, radius };
}

/** One decoded PLY with its GPU textures and its draw order from the sort worker. */
class ViewerScene {
  constructor(viewer, splats) {
    this.id = nextSceneId++;
    this.splats = splats;
    this.gpu = viewer.renderer.createScene(splats);
    this.sent = 0;            // splats whose positions the worker has
    this.sorting = false;
    this.wantSort = false;
    this.sortedCount = 0;     // splats covered by the order on the GPU
    this.done = false;
    sortListeners.set(this.id, (message) => viewer._onSorted(this, message));
  }

  dispose() {
    sortListeners.delete(this.id);
    sorter().postMessage({ type: "drop", set: this.id });
    this.gpu.dispose();
  }
}

export class SplatViewer {
  /** `resolveUrl(fileRef)` turns {filename, subfolder, type} into a URL; `maxSplats` caps what is loaded. */
  constructor({ resolveUrl, maxSplats = DEFAULT_MAX_SPLATS }) {
    injectStyle("dimx-viewer-style", STYLE);
    this.resolveUrl = resolveUrl;
    this.maxSplats = maxSplats;
    this.camera = new OrbitCamera();
    this.home = null;          // the camera placement "Reset view" returns to
    this.interacted = false;   // once the user moves the camera, loading no longer re-frames the view
    this.scenes = [];          // one per time step (a single one for 3D)
    this.times = [];
    this.frame = 0;
    this.cameras = [];
    this.renderer = null;
    this.abort = null;
    this.playing = null;
    this.renderQueued = false;

    this.element = element("div", "dimx-viewer");
    this.element.dimxViewer = this;
    // Vue-rendered nodes hand wheel events to the graph canvas unless an element claims them like this (the
    // newest frontends also want the claiming element to hold the focus, hence the tabindex).
    this.element.dataset.captureWheel = "true";
    this.element.tabIndex = -1;
    this.canvas = element("canvas", null, this.element);
    const info = element("div", "dimx-info", this.element);
    this.statusLine = element("div", "dimx-status", info, "No scene yet: run the workflow to see it here.");
    this.noticeLine = element("div", "dimx-notice", info);
    this.errorLine = element("div", "dimx-error", info);
    this.resetButton = element("button", "dimx-reset", this.element, "Reset view");
    this.resetButton.title = "Back to the starting view (double-click the view does the same)";
    this.resetButton.addEventListener("click", () => this.resetView());
    this.timebar = element("div", "dimx-timebar", this.element);
    this.playButton = element("button", "dimx-play", this.timebar, "▶");
    this.playButton.title = "Play / pause the 4D scene";
    this.playButton.addEventListener("click", () => this.togglePlay());
    this.slider = element("input", "dimx-time", this.timebar);
    this.slider.type = "range";
    this.slider.min = "0";
    this.slider.step = "1";
    this.slider.addEventListener("input", () => this.setFrame(Number(this.slider.value)));
    this.timeLabel = element("span", "dimx-time-label", this.timebar);
    this.timebar.style.display = "none";
    this._setState("empty");
    this._listen();
    this.resizeObserver = new ResizeObserver(() => this._resize());
    this.resizeObserver.observe(this.element);
  }

  /** Show a dimx_scene entry: {scene: fileRef, cameras: fileRef | null, kind: "3d" | "4d"}. */
  async show(entry) {
    this.abort?.abort();
    const abort = (this.abort = new AbortController());
    this._clear();
    this._setState("loading");
    this.statusLine.textContent = "Loading…";
    try {
      if (!this.renderer) this.renderer = new SplatRenderer(this.canvas);
      this._resize();
      if (entry.cameras) {
        this.cameras = parseTransforms(await fetchJson(this.resolveUrl(entry.cameras), "cameras file", abort.signal));
      }
      if (entry.kind === "4d") {
        const manifest = parseManifest(await fetchJson(this.resolveUrl(entry.scene), "4D scene manifest",
          abort.signal));
        this.times = manifest.times;
        this._showTimebar();
        const perFrame = Math.max(1, Math.floor(this.maxSplats / manifest.frames.length));
        for (let i = 0; i < manifest.frames.length && !abort.signal.aborted; i++) {
          await this._load(manifest.frames[i], i, perFrame, abort.signal);
        }
      } else if (entry.kind === "3d" || entry.kind === undefined) {
        this.times = [];
        await this._load(entry.scene, 0, this.maxSplats, abort.signal);
      } else {
        throw new SceneError(`unknown scene kind ${JSON.stringify(entry.kind)} (expected "3d" or "4d")`);
      }
      if (abort.signal.aborted) return;
      this._frameView();
      this._updateStatus();
      this._requestRender();
    } catch (error) {
      if (error.name === "AbortError" || abort.signal.aborted) return;
      this._setState("error");
      this.statusLine.textContent = "";
      this.errorLine.textContent = `Cannot show the scene: ${error.message}`;
      console.warn("[DimensionX viewer]", error);
    }
  }

  async _load(fileRef, index, maxSplats, signal) {
    let scene = null;
    await streamPly(this.resolveUrl(fileRef), {
      maxSplats,
      signal,
      onSplats: (splats, fraction) => {
        if (!scene) {
          scene = new ViewerScene(this, splats);
          this.scenes[index] = scene;
          if (index === this.frame) this._updateNotice();
        }
        this.loadFraction = fraction;
        this._updateStatus();
        this._requestRender();
      },
    });
    scene.done = true;
    this._requestRender();
  }

  setFrame(index) {
    this.frame = Math.max(0, Math.min(index, this.times.length - 1));
    this.slider.value = String(this.frame);
    this.timeLabel.textContent = `t = ${this.times[this.frame]}  (${this.frame + 1}/${this.times.length})`;
    this.element.dataset.frame = String(this.frame);
    const scene = this.scenes[this.frame];
    if (scene) this._requestSort(scene);
    this._updateStatus();
    this._requestRender();
  }

  togglePlay() {
    if (this.playing) {
      clearInterval(this.playing);
      this.playing = null;
      this.playButton.textContent = "▶";
    } else {
      this.playing = setInterval(() => {
        const next = (this.frame + 1) % this.times.length;
        if (this.scenes[next]?.done) this.setFrame(next);
      }, 1000 / PLAY_FPS);
      this.playButton.textContent = "❚❚";
    }
    this.element.dataset.playing = this.playing ? "1" : "0";
  }

  resetView() {
    if (this.home) this.camera.set(this.home);
    this.interacted = false;
    this._cameraMoved();
  }

  dispose() {
    this.abort?.abort();
    if (this.playing) this.togglePlay();
    this._clear();
    this.resizeObserver.disconnect();
    this.renderer?.dispose();
    this.renderer = null;
  }

  _clear() {
    for (const scene of this.scenes) scene?.dispose();
    this.scenes = [];
    this.cameras = [];
    this.frame = 0;
    this.home = null;
    this.interacted = false;
    this.loadFraction = 0;
    this.renderer?.setLines(new Float32Array(0));
    this.noticeLine.textContent = "";
    this.errorLine.textContent = "";
    this.timebar.style.display = "none";
  }

  _showTimebar() {
    this.timebar.style.display = "flex";
    this.slider.max = String(this.times.length - 1);
    this.setFrame(0);
  }

  _setState(state) {
    this.element.dataset.state = state;
  }

  _updateNotice() {
    const splats = this.scenes[this.frame]?.splats;
    if (splats && splats.count < splats.sourceCount) {
      const perFrame = this.times.length ? ` per time step (${this.times.length} steps share the cap)` : "";
      this.noticeLine.textContent = `Showing ${splats.count.toLocaleString("en")} of ` +
        `${splats.sourceCount.toLocaleString("en")} splats${perFrame}: the viewer's cap is ` +
        `${this.maxSplats.toLocaleString("en")} (setting "DimensionX viewer: maximum splats").`;
    }
  }

  _updateStatus() {
    const scene = this.scenes[this.frame];
    if (!scene) return;
    const count = scene.splats.loaded.toLocaleString("en");
    const loading = this.scenes.length < Math.max(1, this.times.length) || this.scenes.some((s) => !s?.done);
    const steps = this.times.length;
    const frames = steps ? ` · ${this.scenes.filter((s) => s?.done).length}/${steps} steps` : "";
    this.statusLine.textContent = loading
      ? `Loading ${Math.round(100 * (this.loadFraction ?? 0))}% · ${count} splats${frames}`
      : `${count} splats${frames}${this.cameras.length ? ` · ${this.cameras.length} cameras` : ""}`;
    this.element.dataset.splats = String(scene.splats.loaded);
  }

  /** The starting view: the first trajectory camera when there is one, else the whole scene from -Z. */
  _frameView() {
    const scene = this.scenes[this.frame] ?? this.scenes.find(Boolean);
    if (!scene || scene.splats.loaded === 0) return;
    const { center, radius } = robustBounds(scene.splats.positions, scene.splats.loaded);
    this.sceneRadius = radius;
    if (this.cameras.length) {
      const first = this.cameras[0];
      const [, up, back, eye] = columns(first.c2w);
      const forward = scale(normalize(back), -1);
      const depth = Math.max(radius * 0.05, (center[0] - eye[0]) * forward[0] + (center[1] - eye[1]) * forward[1] +
        (center[2] - eye[2]) * forward[2]);
      this.home = { target: add(eye, scale(forward, depth)), forward, up, distance: depth,
        fovY: 2 * Math.atan(first.height / 2 / first.fy) };
    } else {
      // Scenes from the DimensionX pipeline use OpenCV world axes (x right, y down, z forward).
      this.home = { target: center, forward: [0, 0, 1], up: [0, -1, 0],
        distance: radius / Math.sin(DEFAULT_FOV_Y / 2), fovY: DEFAULT_FOV_Y };
    }
    if (!this.interacted) this.camera.set(this.home);
    this._buildCameraLines(radius);
    this._cameraMoved();
  }

  _buildCameraLines(radius) {
    if (!this.cameras.length) return;
    // Frustums as large as the path allows without overlapping, but always visible next to the scene.
    const centres = this.cameras.map((camera) => columns(camera.c2w)[3]);
    const gaps = centres.slice(1).map((c, i) => Math.hypot(...sub(c, centres[i]))).sort((a, b) => a - b);
    const spacing = gaps.length ? gaps[Math.floor(gaps.length / 2)] : 0;
    const size = Math.min(0.3 * radius, Math.max(0.12 * radius, 0.4 * spacing));
    const vertices = [];
    const segment = (a, b, rgb) => vertices.push(...a, ...rgb, ...b, ...rgb);
    this.cameras.forEach((camera, i) => {
      const [right, up, back, eye] = columns(camera.c2w);
      const rgb = i === 0 ? FIRST_CAMERA_RGB : CAMERA_RGB;
      // Image corners through the pinhole, at depth `size` in front of the camera (OpenGL: -Z forward).
      const corners = [[0, 0], [camera.width, 0], [camera.width, camera.height], [0, camera.height]].map(([u, v]) =>
        add(eye, add(add(scale(right, ((u - camera.cx) / camera.fx) * size),
          scale(up, (-(v - camera.cy) / camera.fy) * size)), scale(back, -size))));
      corners.forEach((corner, k) => {
        segment(eye, corner, rgb);
        segment(corner, corners[(k + 1) % 4], rgb);
      });
      if (i > 0) segment(centres[i - 1], eye, PATH_RGB);
    });
    this.renderer.setLines(new Float32Array(vertices));
  }

  _listen() {
    const canvas = this.canvas;
    let drag = null;
    const stop = (event) => event.stopPropagation();
    const focus = () => this.element.focus({ preventScroll: true });
    // Take the focus on hover (so the wheel zooms at once), but never from a field being edited.
    canvas.addEventListener("pointerenter", () => {
      const active = document.activeElement;
      if (!active?.isContentEditable && !["INPUT", "TEXTAREA", "SELECT"].includes(active?.tagName)) focus();
    });
    canvas.addEventListener("pointerdown", (event) => {
      stop(event);
      event.preventDefault();
      focus();
      canvas.setPointerCapture(event.pointerId);
      const pan = event.button === 1 || event.button === 2 || event.shiftKey || event.ctrlKey;
      drag = { x: event.clientX, y: event.clientY, pan };
      canvas.style.cursor = "grabbing";
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drag) return;
      stop(event);
      const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      drag.x = event.clientX;
      drag.y = event.clientY;
      const height = canvas.clientHeight || 1;
      if (drag.pan) this.camera.pan(dx, dy, height);
      else this.camera.orbit(dx, dy, height);
      this.interacted = true;
      this._cameraMoved();
    });
    const release = (event) => {
      if (!drag) return;
      stop(event);
      drag = null;
      canvas.style.cursor = "grab";
    };
    canvas.addEventListener("pointerup", release);
    canvas.addEventListener("pointercancel", release);
    canvas.addEventListener("wheel", (event) => {
      stop(event);
      event.preventDefault();
      this.camera.zoom(Math.exp(event.deltaY * 0.001));
      this.interacted = true;
      this._cameraMoved();
    }, { passive: false });
    canvas.addEventListener("dblclick", (event) => {
      stop(event);
      this.resetView();
    });
    canvas.addEventListener("mousedown", stop);
    canvas.addEventListener("contextmenu", (event) => {
      stop(event);
      event.preventDefault();
    });
  }

  _resize() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(this.canvas.clientWidth * ratio), height = Math.round(this.canvas.clientHeight * ratio);
    if (width > 0 && height > 0 && (width !== this.canvas.width || height !== this.canvas.height)) {
      this.canvas.width = width;
      this.canvas.height = height;
      this._requestRender();
    }
  }

  _cameraMoved() {
    const scene = this.scenes[this.frame];
    if (scene) this._requestSort(scene);
    this._requestRender();
  }

  _requestSort(scene) {
    scene.wantSort = true;
    if (scene.sorting || scene.sent === 0) return;
    scene.wantSort = false;
    scene.sorting = true;
    sorter().postMessage({ type: "sort", set: scene.id, count: scene.sent, forward: this.camera.forward });
  }

  _onSorted(scene, { order }) {
    scene.sorting = false;
    if (!this.scenes.includes(scene)) return;
    scene.gpu.setOrder(order);
    scene.sortedCount = order.length;
    if (scene.wantSort) this._requestSort(scene);
    this._requestRender();
  }

  _requestRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this._draw();
    });
  }

  _draw() {
    if (!this.renderer) return;
    for (const scene of this.scenes) {
      if (!scene || !scene.gpu.upload()) continue;
      const { positions, loaded } = scene.splats;
      sorter().postMessage({ type: "add", set: scene.id, capacity: scene.splats.count, offset: scene.sent,
        positions: positions.slice(scene.sent * 3, loaded * 3) });
      scene.sent = loaded;
      if (!this.interacted && scene === this.scenes[this.frame] && !scene.done) this._frameView();
      this._requestSort(scene);
    }
    const { width, height } = this.canvas;
    if (width === 0 || height === 0) return;
    const scene = this.scenes[this.frame];
    this.renderer.render(scene?.gpu ?? null, this.camera.matrices(width, height));
    const settled = scene && scene.done && !scene.sorting && !scene.wantSort &&
      scene.sortedCount === scene.splats.loaded;
    const allLoaded = this.scenes.length >= Math.max(1, this.times.length) && this.scenes.every((s) => s?.done);
    if (this.element.dataset.state !== "error" && scene) this._setState(settled && allLoaded ? "ready" : "loading");
  }
}
