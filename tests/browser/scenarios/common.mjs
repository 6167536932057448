// Steps the browser scenarios share: placing a node where it can be seen and setting a widget the way a person
// does in each rendering mode.

/** Reset the canvas view and add a node of `type` at `pos` with `size`; returns its id. */
export async function addNode(page, type, { pos = [120, 110], size = null, values = {} } = {}) {
  return page.evaluate(({ type, pos, size, values }) => {
    const app = window.app;
    app.canvas.ds.scale = 1;
    app.canvas.ds.offset = [0, 0];
    const node = window.LiteGraph.createNode(type);
    if (!node) throw new Error(`the frontend cannot create a ${type} node`);
    node.pos = pos;
    app.graph.add(node);
    for (const [name, value] of Object.entries(values)) {
      const widget = node.widgets.find((w) => w.name === name);
      if (!widget) throw new Error(`${type} has no widget ${name}`);
      widget.value = value;
    }
    if (size) node.setSize([Math.max(size[0], node.size[0]), Math.max(size[1], node.computeSize()[1])]);
    app.canvas.setDirty(true, true);
    return node.id;
  }, { type, pos, size, values });
}

/** Raise the integer widget `name` of node `id` by one step with the mouse (arrow on the canvas, + in Vue). */
export async function incrementWidget(page, helpers, id, name, vueNodes) {
  if (vueNodes) {
    const node = `[data-node-id="${id}"]`;
    const plus = page.locator(`${node} [aria-label="${name}"] button[data-testid="increment"], ` +
      `${node} span:has(> input[aria-label="${name}"]) > button[data-pc-section="incrementbutton"]`).first();
    await plus.click();
    return;
  }
  const point = await page.evaluate(({ id, name }) => {
    const node = window.app.graph.getNodeById(id);
    const widget = node.widgets.find((w) => w.name === name);
    const y = widget.y ?? widget.last_y;
    const height = widget.computeSize?.(node.size[0])?.[1] ?? window.LiteGraph.NODE_WIDGET_HEIGHT;
    return [node.pos[0] + node.size[0] - 22, node.pos[1] + y + height / 2];
  }, { id, name });
  const [x, y] = await helpers.graphToPage(page, point);
  await page.mouse.click(x, y);
}

/** Wait until `selector`'s data-state is one of `states`; returns the state. */
export async function waitForState(page, selector, states, timeout = 60_000) {
  await page.waitForFunction(({ selector, states }) => states.includes(document.querySelector(selector)?.dataset.state),
    { selector, states }, { timeout });
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
  return page.evaluate((s) => document.querySelector(s).dataset.state, selector);
}
