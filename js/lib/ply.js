// Streaming decoder for 3D Gaussian Splatting PLY files (binary little-endian), written for the DimensionX viewer.
// It turns each vertex into the GPU layout the renderer samples: 3 RGBA32UI texels per splat
//   texel 0: x, y, z (float bits), colour+opacity (RGBA8)     texel 1: covariance xx, xy, xz, yy
//   texel 2: covariance yz, zz, 0, 0
// and, when the file has higher-order spherical harmonics, 8 half floats per texel in a second array:
//   DC r,g,b then r,g,b of each higher coefficient (degree 1: 2 texels, 2: 4, 3: 6).

export const SPLAT_TEXELS = 3;
export const SH_C0 = 0.28209479177387814;
const SH_TEXELS = [0, 2, 4, 6];
const HEADER_LIMIT = 1 << 16;
const TYPES = {
  char: [1, "getInt8"], int8: [1, "getInt8"], uchar: [1, "getUint8"], uint8: [1, "getUint8"],
  short: [2, "getInt16"], int16: [2, "getInt16"], ushort: [2, "getUint16"], uint16: [2, "getUint16"],
  int: [4, "getInt32"], int32: [4, "getInt32"], uint: [4, "getUint32"], uint32: [4, "getUint32"],
  float: [4, "getFloat32"], float32: [4, "getFloat32"], double: [8, "getFloat64"], float64: [8, "getFloat64"],
};
const REQUIRED = ["x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
  "f_dc_0", "f_dc_1", "f_dc_2"];

export class PlyError extends Error {}

/** Parse the header once `bytes` holds it; null while it is still incomplete. */
export function parsePlyHeader(bytes) {
  const text = new TextDecoder("latin1").decode(bytes.subarray(0, Math.min(bytes.length, HEADER_LIMIT)));
  const end = text.indexOf("end_header\n");
  if (end < 0) {
    if (bytes.length >= HEADER_LIMIT || (bytes.length >= 4 && !text.startsWith("ply"))) {
      throw new PlyError("not a PLY file: no 'ply ... end_header' header in the first 64 KiB");
    }
    return null;
  }
  const lines = text.slice(0, end).split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("comment"));
  if (lines[0] !== "ply") throw new PlyError("not a PLY file: it does not start with 'ply'");
  const format = lines.find((l) => l.startsWith("format "));
  if (!format || format.split(/\s+/)[1] !== "binary_little_endian") {
    throw new PlyError(`unsupported PLY format '${format ?? "none"}': the viewer reads binary_little_endian only`);
  }
  const elements = [];
  for (const line of lines) {
    const parts = line.split(/\s+/);
    if (parts[0] === "element") elements.push({ name: parts[1], count: Number(parts[2]), properties: [], stride: 0 });
    if (parts[0] === "property") {
      const element = elements[elements.length - 1];
      if (!element) throw new PlyError(`PLY property before any element: '${line}'`);
      if (parts[1] === "list") {
        element.stride = NaN;  // variable size: cannot be skipped or indexed
        continue;
      }
      const type = TYPES[parts[1]];
      if (!type) throw new PlyError(`unknown PLY property type '${parts[1]}' in '${line}'`);
      element.properties.push({ name: parts[2], size: type[0], getter: type[1], offset: element.stride });
      element.stride += type[0];
    }
  }
  let dataOffset = end + "end_header\n".length;
  for (const element of elements) {
    if (element.name === "vertex") {
      const names = new Set(element.properties.map((p) => p.name));
      const missing = REQUIRED.filter((n) => !names.has(n));
      if (missing.length) {
        throw new PlyError(`PLY vertices lack Gaussian splat properties: ${missing.join(", ")} ` +
          "(expected a 3DGS file with x,y,z, f_dc_0..2, opacity, scale_0..2, rot_0..3)");
      }
      if (!Number.isFinite(element.stride)) throw new PlyError("PLY vertex element has list properties");
      const rest = element.properties.filter((p) => /^f_rest_\d+$/.test(p.name)).length;
      const shDegree = [3, 2, 1, 0].find((d) => rest >= 3 * ((d + 1) ** 2 - 1));
      return { dataOffset, vertexCount: element.count, stride: element.stride, properties: element.properties,
        shDegree, restPerChannel: rest / 3 };
    }
    if (!Number.isFinite(element.stride)) {
      throw new PlyError(`PLY element '${element.name}' before the vertices has list properties`);
    }
    dataOffset += element.count * element.stride;
  }
  throw new PlyError("PLY file has no 'vertex' element");
}

/** The decoded splats of one scene, in GPU layout; `loaded` grows while a file streams in. */
export class SplatSet {
  constructor(count, shDegree, sourceCount = count) {
    this.count = count;
    this.sourceCount = sourceCount;
    this.loaded = 0;
    this.shDegree = shDegree;
    this.shTexels = SH_TEXELS[shDegree];
    this.texels = new Uint32Array(count * SPLAT_TEXELS * 4);
    this.floats = new Float32Array(this.texels.buffer);
    this.positions = new Float32Array(count * 3);
    this.sh = this.shTexels ? new Uint32Array(count * this.shTexels * 4) : null;
  }
}

const halfScratch = new Float32Array(1);
const halfBits = new Uint32Array(halfScratch.buffer);
function toHalf(value) {
  halfScratch[0] = value;
  const x = halfBits[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = ((x >>> 23) & 0xff) - 127 + 15;
  const mantissa = x & 0x7fffff;
  if (exponent <= 0) return exponent < -10 ? sign : sign | ((mantissa | 0x800000) >>> (14 - exponent));
  if (exponent >= 31) return sign | 0x7c00;
  return sign | (exponent << 10) | (mantissa >>> 13);
}

const clampByte = (v) => Math.max(0, Math.min(255, Math.round(v * 255)));

/**
 * Feed it the file's bytes as they arrive (`push`); it fills `splats` progressively. With more vertices than
 * `maxSplats` it keeps an evenly spread subset (exactly maxSplats), so a capped scene still covers all of it.
 */
export class PlyDecoder {
  constructor({ maxSplats = Infinity } = {}) {
    this.maxSplats = maxSplats;
    this.header = null;
    this.splats = null;
    this.pending = new Uint8Array(0);
    this.skipped = 0;  // bytes of the file consumed before `pending`
    this.vertex = 0;   // next vertex index of the file
  }

  push(chunk) {
    const joined = new Uint8Array(this.pending.length + chunk.length);
    joined.set(this.pending);
    joined.set(chunk, this.pending.length);
    this.pending = joined;
    if (!this.header) {
      this.header = parsePlyHeader(this.pending);
      if (!this.header) return 0;
      const kept = Math.min(this.header.vertexCount, this.maxSplats);
      this.splats = new SplatSet(kept, this.header.shDegree, this.header.vertexCount);
      this._prepareReaders();
    }
    const start = Math.max(0, this.header.dataOffset - this.skipped);
    if (start >= this.pending.length) return 0;
    const { stride, vertexCount } = this.header;
    const available = Math.min(Math.floor((this.pending.length - start) / stride), vertexCount - this.vertex);
    const view = new DataView(this.pending.buffer, this.pending.byteOffset + start, available * stride);
    const before = this.splats.loaded;
    for (let i = 0; i < available; i++, this.vertex++) {
      if (this._keeps(this.vertex)) this._decode(view, i * stride, this.splats.loaded++);
    }
    const consumed = start + available * stride;
    this.skipped += consumed;
    this.pending = this.pending.slice(consumed);
    return this.splats.loaded - before;
  }

  get done() {
    return !!this.header && this.vertex >= this.header.vertexCount;
  }

  _keeps(i) {
    const { count, sourceCount } = this.splats;
    return count === sourceCount || Math.floor(((i + 1) * count) / sourceCount) > Math.floor((i * count) / sourceCount);
  }

  _prepareReaders() {
    const byName = Object.fromEntries(this.header.properties.map((p) => [p.name, p]));
    const reader = (name) => {
      const { offset, getter } = byName[name];
      return (view, base) => view[getter](base + offset, true);
    };
    this.read = Object.fromEntries(REQUIRED.map((n) => [n, reader(n)]));
    const perChannel = this.header.restPerChannel;
    const used = (this.header.shDegree + 1) ** 2 - 1;
    // f_rest is channel-major: all red coefficients, then green, then blue.
    this.readRest = [];
    for (let k = 0; k < used; k++) {
      for (let c = 0; c < 3; c++) this.readRest.push(reader(`f_rest_${c * perChannel + k}`));
    }
  }

  _decode(view, base, index) {
    const r = this.read;
    const x = r.x(view, base), y = r.y(view, base), z = r.z(view, base);
    const dc = [r.f_dc_0(view, base), r.f_dc_1(view, base), r.f_dc_2(view, base)];
    const alpha = 1 / (1 + Math.exp(-r.opacity(view, base)));
    const sx = Math.exp(r.scale_0(view, base)), sy = Math.exp(r.scale_1(view, base));
    const sz = Math.exp(r.scale_2(view, base));
    let qw = r.rot_0(view, base), qx = r.rot_1(view, base), qy = r.rot_2(view, base), qz = r.rot_3(view, base);
    const qn = Math.hypot(qw, qx, qy, qz) || 1;
    qw /= qn; qx /= qn; qy /= qn; qz /= qn;
    // Covariance = R S S^T R^T with R from the unit quaternion (w, x, y, z).
    const m = [
      (1 - 2 * (qy * qy + qz * qz)) * sx, 2 * (qx * qy - qw * qz) * sy, 2 * (qx * qz + qw * qy) * sz,
      2 * (qx * qy + qw * qz) * sx, (1 - 2 * (qx * qx + qz * qz)) * sy, 2 * (qy * qz - qw * qx) * sz,
      2 * (qx * qz - qw * qy) * sx, 2 * (qy * qz + qw * qx) * sy, (1 - 2 * (qx * qx + qy * qy)) * sz,
    ];
    const row = (i, j) => m[3 * i] * m[3 * j] + m[3 * i + 1] * m[3 * j + 1] + m[3 * i + 2] * m[3 * j + 2];
    const { texels, floats, positions, sh } = this.splats;
    const t = index * SPLAT_TEXELS * 4;
    floats[t] = x; floats[t + 1] = y; floats[t + 2] = z;
    texels[t + 3] = (clampByte(0.5 + SH_C0 * dc[0]) | (clampByte(0.5 + SH_C0 * dc[1]) << 8) |
      (clampByte(0.5 + SH_C0 * dc[2]) << 16) | (clampByte(alpha) << 24)) >>> 0;
    floats[t + 4] = row(0, 0); floats[t + 5] = row(0, 1); floats[t + 6] = row(0, 2); floats[t + 7] = row(1, 1);
    floats[t + 8] = row(1, 2); floats[t + 9] = row(2, 2);
    positions[index * 3] = x; positions[index * 3 + 1] = y; positions[index * 3 + 2] = z;
    if (sh) {
      const halves = [...dc, ...this.readRest.map((read) => read(view, base))];
      const s = index * this.splats.shTexels * 4;
      for (let h = 0; h < halves.length; h += 2) {
        sh[s + h / 2] = (toHalf(halves[h]) | (toHalf(halves[h + 1] ?? 0) << 16)) >>> 0;
      }
    }
  }
}
