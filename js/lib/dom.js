// Small DOM helpers shared by the pack's widgets.

/** Add a <style> with `css` to the page once per `id`. */
export function injectStyle(id, css) {
  if (document.getElementById(id)) return;
  const style = document.createElement("style");
  style.id = id;
  style.textContent = css;
  document.head.appendChild(style);
}

/** Create a `tag` element with a class and text, appended to `parent` when given. */
export function element(tag, className, parent, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  parent?.appendChild(node);
  return node;
}
