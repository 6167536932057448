// ComfyUI extension: an interactive splat view inside every node whose result carries `dimx_scene`
// (DimensionX save/preview Gaussians nodes, and any other node that reports a scene the same way).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { DEFAULT_MAX_SPLATS, SplatViewer } from "./lib/splat_viewer.js";

const SCENE_PRODUCERS = new Set(["DimensionXSaveGaussians", "DimensionXPreviewGaussians"]);
const WIDGET_NAME = "dimx_splat_view";
const MAX_SPLATS_SETTING = "DimensionX.Viewer.MaxSplats";
const VIEW_SIZE = [480, 360];

/** Read a setting through whichever API this frontend offers (extensionManager on newer ones). */
function setting(id, fallback) {
  const value = app.extensionManager?.setting?.get?.(id) ?? app.ui?.settings?.getSettingValue?.(id);
  return value ?? fallback;
}

function viewUrl(file) {
  const params = new URLSearchParams({ filename: file.filename, subfolder: file.subfolder ?? "",
    type: file.type ?? "output" });
  return api.apiURL(`/view?${params}`);
}

function maxSplats() {
  return Math.max(1000, Number(setting(MAX_SPLATS_SETTING, DEFAULT_MAX_SPLATS)));
}

function ensureViewer(node) {
  if (node.dimxViewer) return node.dimxViewer;
  const viewer = new SplatViewer({ resolveUrl: viewUrl, maxSplats: maxSplats() });
  node.addDOMWidget(WIDGET_NAME, "dimx-splat-view", viewer.element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => 220,
  });
  node.dimxViewer = viewer;
  const removed = node.onRemoved;
  node.onRemoved = function () {
    viewer.dispose();
    node.dimxViewer = null;
    return removed?.apply(this, arguments);
  };
  const [width, height] = node.size;
  node.setSize([Math.max(width, VIEW_SIZE[0]), Math.max(height, node.computeSize()[1], VIEW_SIZE[1])]);
  node.setDirtyCanvas?.(true, true);
  return viewer;
}

app.registerExtension({
  name: "DimensionX.SplatViewer",
  settings: [{
    id: MAX_SPLATS_SETTING,
    category: ["DimensionX", "Viewer", "Maximum splats"],
    name: "DimensionX viewer: maximum splats",
    tooltip: "Larger scenes are thinned evenly to this many splats (shared by the time steps of a 4D scene).",
    type: "number",
    defaultValue: DEFAULT_MAX_SPLATS,
    attrs: { min: 1000, max: 20_000_000, step: 1000 },
  }],

  async beforeRegisterNodeDef(nodeType) {
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      const scenes = output?.dimx_scene;
      if (Array.isArray(scenes) && scenes.length > 0) {
        const viewer = ensureViewer(this);
        viewer.maxSplats = maxSplats();  // the setting may have changed since the view was made
        viewer.show(scenes[0]);
      }
      return result;
    };
  },

  async nodeCreated(node) {
    if (SCENE_PRODUCERS.has(node.comfyClass)) ensureViewer(node);
  },
});
