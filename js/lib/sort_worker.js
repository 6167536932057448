// Back-to-front depth sort of splats, run in a Web Worker so that large scenes keep the page responsive.
// ComfyUI imports every .js file of the pack as a module on the main page too: this file only starts
// listening for messages when it runs inside a worker.

const DEPTH_BUCKETS = 65536;

/**
 * Indices of the first `count` splats ordered far to near along the unit view direction `forward`:
 * a one-pass counting sort on depth quantised to 16 bits, O(n), stable within a bucket.
 */
export function sortBackToFront(positions, count, forward) {
  const depths = new Float32Array(count);
  let min = Infinity, max = -Infinity;
  for (let i = 0; i < count; i++) {
    depths[i] = positions[3 * i] * forward[0] + positions[3 * i + 1] * forward[1] + positions[3 * i + 2] * forward[2];
    const d = depths[i];  // the stored (float32) value, so that the keys below stay within [0, buckets)
    if (d < min) min = d;
    if (d > max) max = d;
  }
  const scale = max > min ? (DEPTH_BUCKETS - 1) / (max - min) : 0;
  const keys = new Uint16Array(count);
  const starts = new Uint32Array(DEPTH_BUCKETS);
  for (let i = 0; i < count; i++) {
    const key = DEPTH_BUCKETS - 1 - Math.floor((depths[i] - min) * scale);  // farthest gets key 0
    keys[i] = key;
    starts[key]++;
  }
  for (let k = 0, total = 0; k < DEPTH_BUCKETS; k++) {
    const n = starts[k];
    starts[k] = total;
    total += n;
  }
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[starts[keys[i]]++] = i;
  return order;
}

function serve(scope) {
  const sets = new Map();  // scene id -> Float32Array of positions, filled as the file streams in
  scope.onmessage = ({ data }) => {
    if (data.type === "add") {
      if (!sets.has(data.set)) sets.set(data.set, new Float32Array(data.capacity * 3));
      sets.get(data.set).set(data.positions, data.offset * 3);
    } else if (data.type === "drop") {
      sets.delete(data.set);
    } else if (data.type === "sort") {
      const positions = sets.get(data.set);
      const order = positions ? sortBackToFront(positions, data.count, data.forward) : new Uint32Array(0);
      scope.postMessage({ type: "sorted", set: data.set, request: data.request, order }, [order.buffer]);
    }
  };
}

if (typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope) serve(self);
