// Decode a PLY file with the viewer's own decoder (js/lib/ply.js), feeding it `chunk` bytes at a time, and print
// what the GPU would get as JSON:  node decode_ply.mjs <file> <chunk bytes> [max splats]
import fs from "node:fs";
import { PlyDecoder } from "../../../js/lib/ply.js";

const [file, chunk, maxSplats] = process.argv.slice(2);
const bytes = new Uint8Array(fs.readFileSync(file));
const decoder = new PlyDecoder({ maxSplats: maxSplats ? Number(maxSplats) : Infinity });
let progress = 0;
for (let start = 0; start < bytes.length; start += Number(chunk)) {
  decoder.push(bytes.subarray(start, start + Number(chunk)));
  if (decoder.splats) progress++;
}
const { splats } = decoder;
process.stdout.write(JSON.stringify({
  done: decoder.done, progress, count: splats.count, sourceCount: splats.sourceCount, loaded: splats.loaded,
  shDegree: splats.shDegree, shTexels: splats.shTexels,
  texels: Array.from(splats.texels), sh: splats.sh ? Array.from(splats.sh) : null,
}));
