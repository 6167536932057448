// Reading what the DimensionX save/preview nodes write: a 3DGS PLY (streamed, decoded while it downloads),
// the nerfstudio transforms.json of its cameras, and the manifest of a 4D scene (one PLY per time step).
import { PlyDecoder } from "./ply.js";

export class SceneError extends Error {}

async function fetchOk(url, what, signal) {
  let response;
  try {
    response = await fetch(url, { signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new SceneError(`could not fetch the ${what} (${url}): ${error.message}`);
  }
  if (!response.ok) throw new SceneError(`the server answered ${response.status} for the ${what} (${url})`);
  return response;
}

export async function fetchJson(url, what, signal) {
  const response = await fetchOk(url, what, signal);
  try {
    return await response.json();
  } catch (error) {
    throw new SceneError(`the ${what} is not valid JSON: ${error.message}`);
  }
}

/**
 * Download and decode a PLY progressively. `onSplats(splats, fraction)` runs whenever more splats are decoded,
 * the first time as soon as the header is known. Resolves with the complete SplatSet.
 */
export async function streamPly(url, { maxSplats, onSplats, signal }) {
  const response = await fetchOk(url, "splat file", signal);
  const decoder = new PlyDecoder({ maxSplats });
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    try {
      decoder.push(value);
    } catch (error) {
      throw new SceneError(`${url}: ${error.message}`);
    }
    if (decoder.splats) onSplats(decoder.splats, decoder.vertex / Math.max(1, decoder.header.vertexCount));
  }
  if (!decoder.done) {
    const expected = decoder.header ? `${decoder.header.vertexCount} vertices` : "a PLY header";
    throw new SceneError(`the splat file ended early: expected ${expected}, got ${decoder.vertex}`);
  }
  return decoder.splats;
}

/** nerfstudio transforms.json -> cameras with OpenGL camera-to-world rows and pixel intrinsics. */
export function parseTransforms(json) {
  if (!json || !Array.isArray(json.frames) || json.frames.length === 0) {
    throw new SceneError("the cameras file has no 'frames' list (expected a nerfstudio transforms.json)");
  }
  return json.frames.map((frame, i) => {
    const pick = (key) => frame[key] ?? json[key];
    const c2w = frame.transform_matrix;
    if (!Array.isArray(c2w) || c2w.length < 3 || c2w.some((row) => !Array.isArray(row) || row.length !== 4)) {
      throw new SceneError(`camera ${i} has no 4x4 'transform_matrix'`);
    }
    const camera = { c2w, fx: pick("fl_x"), fy: pick("fl_y"), cx: pick("cx"), cy: pick("cy"), width: pick("w"),
      height: pick("h") };
    for (const [key, value] of Object.entries(camera)) {
      if (key !== "c2w" && !(Number.isFinite(value) && value > 0)) {
        throw new SceneError(`camera ${i} lacks a positive '${key}' (fl_x, fl_y, cx, cy, w, h are needed)`);
      }
    }
    return camera;
  });
}

/** The 4D manifest {"kind": "dimx-4d", "times": [...], "frames": [file refs]}, checked. */
export function parseManifest(json) {
  if (!json || json.kind !== "dimx-4d") {
    throw new SceneError(`a 4D scene manifest must have kind 'dimx-4d', got ${JSON.stringify(json?.kind)}`);
  }
  const { times, frames } = json;
  if (!Array.isArray(frames) || frames.length === 0 || !Array.isArray(times) || times.length !== frames.length) {
    throw new SceneError("a 4D scene manifest needs 'frames' and 'times' lists of the same, non-zero length");
  }
  frames.forEach((frame, i) => {
    if (!frame || typeof frame.filename !== "string") throw new SceneError(`4D frame ${i} has no filename`);
  });
  return { times, frames };
}
