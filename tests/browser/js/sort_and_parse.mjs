// The viewer's depth sort and file checks, called from Python: node sort_and_parse.mjs '<JSON request>'
import { sortBackToFront } from "../../../js/lib/sort_worker.js";
import { parseManifest, parseTransforms } from "../../../js/lib/scene_source.js";
import { parsePlyHeader } from "../../../js/lib/ply.js";
import { readTrajectory } from "../../../js/lib/trajectory_draw.js";

const request = JSON.parse(process.argv[2]);
const attempt = (fn) => {
  try {
    return { ok: fn() ?? true };
  } catch (error) {
    return { error: error.message };
  }
};
const answer = {
  order: request.positions
    ? Array.from(sortBackToFront(new Float32Array(request.positions), request.positions.length / 3, request.forward))
    : null,
  headers: (request.headers ?? []).map((text) => attempt(() => {
    const header = parsePlyHeader(new TextEncoder().encode(text));
    return header && { vertexCount: header.vertexCount, stride: header.stride, shDegree: header.shDegree,
      dataOffset: header.dataOffset };
  })),
  manifests: (request.manifests ?? []).map((json) => attempt(() => parseManifest(json))),
  transforms: (request.transforms ?? []).map((json) => attempt(() => parseTransforms(json).length)),
  trajectories: (request.trajectories ?? []).map((json) => attempt(() => readTrajectory(json).cameras.length)),
};
process.stdout.write(JSON.stringify(answer));
