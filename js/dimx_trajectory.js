// ComfyUI extension: draws the camera path a DimensionX Trajectory Planner node will produce, inside the node,
// before anything is generated. It asks the server (GET /dimensionx/trajectory with the node's widget values)
// whenever a widget changes, debounced, and shows the server's error text when the values are refused.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { element, injectStyle } from "./lib/dom.js";
import { DEFAULT_VIEW, drawTrajectory } from "./lib/trajectory_draw.js";

const PLANNER = "DimensionXTrajectoryPlanner";
const WIDGET_NAME = "dimx_trajectory_preview";
const ROUTE = "/dimensionx/trajectory";
const DEBOUNCE_MS = 250;
const PREVIEW_HEIGHT = 240;

const STYLE = `
.dimx-trajectory { position: relative; width: 100%; height: 100%; min-height: ${PREVIEW_HEIGHT}px; overflow: hidden;
  border-radius: 4px; background: rgb(24, 26, 30); }
.dimx-trajectory canvas { position: absolute; inset: 0; width: 100%; height: 100%; cursor: grab; touch-action: none; }
.dimx-trajectory .dimx-trajectory-error { position: absolute; inset: 0; padding: 8px; color: #ff7070;
  font: 12px sans-serif; white-space: pre-wrap; background: rgb(24, 26, 30); }
`;

/** The planner's own widget values, as the route's query string. */
function plannerQuery(node) {
  const params = new URLSearchParams();
  for (const widget of node.widgets ?? []) {
    if (widget.name === WIDGET_NAME || widget.name === "control_after_generate") continue;
    if (["string", "number", "boolean"].includes(typeof widget.value)) params.set(widget.name, String(widget.value));
  }
  return params;
}

class TrajectoryPreview {
  constructor(node) {
    injectStyle("dimx-trajectory-style", STYLE);
    this.node = node;
    this.view = { ...DEFAULT_VIEW };
    this.result = null;
    this.request = 0;
    this.timer = null;
    this.element = element("div", "dimx-trajectory");
    this.element.dimxPreview = this;
    this.element.dataset.captureWheel = "true";
    this.canvas = element("canvas", null, this.element);
    this.errorBox = element("div", "dimx-trajectory-error", this.element);
    this.errorBox.style.display = "none";
    this.element.dataset.state = "idle";
    this._listen();
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.element);
  }

  /** Ask again for the path after the widgets have been still for a moment. */
  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), DEBOUNCE_MS);
  }

  async refresh() {
    const request = ++this.request;
    const query = plannerQuery(this.node).toString();
    this.element.dataset.state = "loading";
    let answer;
    try {
      const response = await api.fetchApi(`${ROUTE}?${query}`);
      const body = await response.json().catch(() => ({}));
      answer = response.ok ? { result: body } : { error: body.error ?? `the server answered ${response.status}` };
    } catch (error) {
      answer = { error: `could not reach ${ROUTE}: ${error.message}` };
    }
    if (request !== this.request) return;  // a newer request is under way
    this.element.dataset.query = query;
    if (answer.error) {
      this.result = null;
      this.showError(answer.error);
      return;
    }
    this.result = answer.result;
    this.draw();
  }

  showError(message) {
    this.errorBox.textContent = `Cannot plan this path: ${message}`;
    this.errorBox.style.display = "block";
    this.element.dataset.state = "error";
  }

  draw() {
    if (!this.result) return;
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth, height = this.canvas.clientHeight;
    if (width === 0 || height === 0) return;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    try {
      this.project = drawTrajectory(ctx, width, height, this.result, this.view);
      this.errorBox.style.display = "none";
      this.element.dataset.state = "drawn";
    } catch (error) {
      this.showError(error.message);
    }
  }

  /** Dragging turns the overview; double-click returns to the default angle. */
  _listen() {
    let drag = null;
    const canvas = this.canvas;
    canvas.addEventListener("pointerdown", (event) => {
      event.stopPropagation();
      canvas.setPointerCapture(event.pointerId);
      drag = { x: event.clientX, y: event.clientY };
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drag) return;
      event.stopPropagation();
      this.view.yaw += (event.clientX - drag.x) * 0.01;
      this.view.pitch = Math.max(-1.5, Math.min(1.5, this.view.pitch + (event.clientY - drag.y) * 0.01));
      drag = { x: event.clientX, y: event.clientY };
      this.draw();
    });
    canvas.addEventListener("pointerup", () => (drag = null));
    canvas.addEventListener("dblclick", (event) => {
      event.stopPropagation();
      this.view = { ...DEFAULT_VIEW };
      this.draw();
    });
  }

  dispose() {
    clearTimeout(this.timer);
    this.resizeObserver.disconnect();
  }
}

function attachPreview(node) {
  const preview = new TrajectoryPreview(node);
  node.addDOMWidget(WIDGET_NAME, "dimx-trajectory-preview", preview.element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => PREVIEW_HEIGHT,
  });
  node.dimxPreview = preview;
  // Every widget change (canvas or Vue node, typed or dragged) goes through the widget's callback.
  for (const widget of node.widgets) {
    if (widget.name === WIDGET_NAME) continue;
    const callback = widget.callback;
    widget.callback = function () {
      preview.schedule();
      return callback?.apply(this, arguments);
    };
  }
  const onConfigure = node.onConfigure;
  node.onConfigure = function () {
    preview.schedule();  // values loaded from a saved workflow
    return onConfigure?.apply(this, arguments);
  };
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    preview.dispose();
    return onRemoved?.apply(this, arguments);
  };
  const [width, height] = node.size;
  node.setSize([Math.max(width, 360), Math.max(height, node.computeSize()[1])]);
  preview.schedule();
}

app.registerExtension({
  name: "DimensionX.TrajectoryPreview",
  async nodeCreated(node) {
    if (node.comfyClass === PLANNER) attachPreview(node);
  },
});
