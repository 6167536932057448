// ComfyUI extension: DimensionX nodes that report text (`ui.PreviewText`, e.g. Pack Info) show it inside the
// node. The frontend only displays text results for its own preview nodes, so the pack shows its own.
import { app } from "../../scripts/app.js";

const WIDGET_NAME = "dimx_text_report";

function textWidget(node) {
  const existing = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (existing) return existing.element;
  const area = document.createElement("textarea");
  area.className = "dimx-text-report";
  area.readOnly = true;
  area.spellcheck = false;
  area.dataset.captureWheel = "true";  // scroll the text, not the graph, in Vue-rendered nodes
  Object.assign(area.style, { width: "100%", height: "100%", minHeight: "120px", resize: "none",
    boxSizing: "border-box",
    font: "12px monospace", background: "rgba(0, 0, 0, 0.25)", color: "inherit", border: "none", padding: "4px" });
  // Let the text be selected and scrolled without dragging the canvas.
  for (const type of ["pointerdown", "wheel"]) area.addEventListener(type, (event) => event.stopPropagation());
  node.addDOMWidget(WIDGET_NAME, "dimx-text", area, { serialize: false, getMinHeight: () => 120 });
  return area;
}

app.registerExtension({
  name: "DimensionX.TextReport",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith("DimensionX")) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      const text = output?.text;
      if (Array.isArray(text) && text.length > 0) {
        textWidget(this).value = text.join("\n");
        this.setDirtyCanvas?.(true, true);
      }
      return result;
    };
  },
});
