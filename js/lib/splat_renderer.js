// WebGL2 renderer for 3D Gaussian splats: each splat is an instanced quad, projected with the 3DGS EWA
// approximation (3D covariance -> 2D covariance through the projection's Jacobian -> conic), alpha blended
// back to front in the order a sort worker delivers. Also draws coloured line sets (camera frustums).
import { SPLAT_TEXELS } from "./ply.js";

export const ROW_SPLATS = 1024;  // splats per texture row

const SPLAT_VS = `#version 300 es
precision highp float;
precision highp int;
precision highp usampler2D;
uniform usampler2D u_splats;
uniform usampler2D u_sh;
uniform int u_shDegree;
uniform int u_shTexels;
uniform mat4 u_view;
uniform mat4 u_proj;
uniform vec2 u_focal;
uniform vec2 u_viewport;
uniform vec3 u_eye;
in uint a_index;
out vec4 v_color;
out vec3 v_conic;
out vec2 v_offset;

const float C1 = 0.4886025119029199;
const float C2[5] = float[5](1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
                             -1.0925484305920792, 0.5462742152960396);
const float C3[7] = float[7](-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
                             -0.4570457994644658, 1.445305721320277, -0.5900435899266435);

vec3 shColour(int index, vec3 p) {
  vec3 c[16];
  ivec2 base = ivec2((index % ${ROW_SPLATS}) * u_shTexels, index / ${ROW_SPLATS});
  for (int t = 0; t < u_shTexels; t++) {
    uvec4 texel = texelFetch(u_sh, base + ivec2(t, 0), 0);
    vec2 h[4] = vec2[4](unpackHalf2x16(texel.x), unpackHalf2x16(texel.y), unpackHalf2x16(texel.z),
                        unpackHalf2x16(texel.w));
    for (int k = 0; k < 8; k++) {
      int flat_index = t * 8 + k;  // 3 values per coefficient
      if (flat_index < 48) c[flat_index / 3][flat_index % 3] = h[k / 2][k % 2];
    }
  }
  vec3 d = normalize(p - u_eye);
  float x = d.x, y = d.y, z = d.z;
  vec3 colour = 0.28209479177387814 * c[0];
  if (u_shDegree > 0) colour += C1 * (-y * c[1] + z * c[2] - x * c[3]);
  if (u_shDegree > 1) {
    colour += C2[0] * x * y * c[4] + C2[1] * y * z * c[5] + C2[2] * (2.0 * z * z - x * x - y * y) * c[6] +
              C2[3] * x * z * c[7] + C2[4] * (x * x - y * y) * c[8];
  }
  if (u_shDegree > 2) {
    colour += C3[0] * y * (3.0 * x * x - y * y) * c[9] + C3[1] * x * y * z * c[10] +
              C3[2] * y * (4.0 * z * z - x * x - y * y) * c[11] +
              C3[3] * z * (2.0 * z * z - 3.0 * x * x - 3.0 * y * y) * c[12] +
              C3[4] * x * (4.0 * z * z - x * x - y * y) * c[13] + C3[5] * z * (x * x - y * y) * c[14] +
              C3[6] * x * (x * x - 3.0 * y * y) * c[15];
  }
  return max(colour + 0.5, 0.0);
}

void main() {
  int index = int(a_index);
  ivec2 base = ivec2((index % ${ROW_SPLATS}) * ${SPLAT_TEXELS}, index / ${ROW_SPLATS});
  uvec4 t0 = texelFetch(u_splats, base, 0);
  vec4 t1 = uintBitsToFloat(texelFetch(u_splats, base + ivec2(1, 0), 0));
  vec4 t2 = uintBitsToFloat(texelFetch(u_splats, base + ivec2(2, 0), 0));
  vec3 p = uintBitsToFloat(t0.xyz);
  vec4 cam = u_view * vec4(p, 1.0);
  vec4 clip = u_proj * cam;
  float depth = -cam.z;
  if (depth < 0.01 || any(greaterThan(abs(clip.xy), vec2(1.3 * clip.w)))) {
    gl_Position = vec4(0.0, 0.0, 2.0, 1.0);  // behind the camera or far off screen: outside the clip volume
    return;
  }
  mat3 sigma = mat3(t1.x, t1.y, t1.z, t1.y, t1.w, t2.x, t1.z, t2.x, t2.y);
  // Jacobian of (x, y, z) -> (fx x / depth, fy y / depth), columns as GLSL stores them.
  mat3 jacobian = mat3(u_focal.x / depth, 0.0, 0.0,
                       0.0, u_focal.y / depth, 0.0,
                       u_focal.x * cam.x / (depth * depth), u_focal.y * cam.y / (depth * depth), 0.0);
  mat3 t = jacobian * mat3(u_view);
  mat3 cov = t * sigma * transpose(t);
  float a = cov[0][0] + 0.3, b = cov[0][1], c = cov[1][1] + 0.3;  // 0.3 px^2: the 3DGS low-pass filter
  float det = a * c - b * b;
  if (det <= 0.0) {
    gl_Position = vec4(0.0, 0.0, 2.0, 1.0);
    return;
  }
  float mid = 0.5 * (a + c);
  float major = mid + sqrt(max(0.1, mid * mid - det));
  float radius = min(ceil(3.0 * sqrt(major)), 1024.0);
  vec2 corner = vec2(float(gl_VertexID & 1), float(gl_VertexID >> 1)) * 2.0 - 1.0;
  v_offset = corner * radius;
  v_conic = vec3(c, -b, a) / det;
  vec4 rgba = vec4(uvec4(t0.w, t0.w >> 8u, t0.w >> 16u, t0.w >> 24u) & 0xffu) / 255.0;
  v_color = vec4(u_shTexels > 0 ? shColour(index, p) : rgba.rgb, rgba.a);
  vec2 ndc = clip.xy / clip.w;
  gl_Position = vec4(ndc + v_offset * 2.0 / u_viewport, clip.z / clip.w, 1.0);
}`;

const SPLAT_FS = `#version 300 es
precision highp float;
in vec4 v_color;
in vec3 v_conic;
in vec2 v_offset;
out vec4 fragColor;
void main() {
  float power = -0.5 * (v_conic.x * v_offset.x * v_offset.x + v_conic.z * v_offset.y * v_offset.y) -
                v_conic.y * v_offset.x * v_offset.y;
  if (power > 0.0) discard;
  float alpha = min(0.99, v_color.a * exp(power));
  if (alpha < 1.0 / 255.0) discard;
  fragColor = vec4(v_color.rgb * alpha, alpha);
}`;

const LINE_VS = `#version 300 es
uniform mat4 u_viewProj;
in vec3 a_position;
in vec3 a_color;
out vec3 v_color;
void main() {
  v_color = a_color;
  gl_Position = u_viewProj * vec4(a_position, 1.0);
}`;

const LINE_FS = `#version 300 es
precision mediump float;
in vec3 v_color;
out vec4 fragColor;
void main() { fragColor = vec4(v_color, 1.0); }`;

function compile(gl, vertexSource, fragmentSource) {
  const program = gl.createProgram();
  for (const [type, source] of [[gl.VERTEX_SHADER, vertexSource], [gl.FRAGMENT_SHADER, fragmentSource]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
      throw new Error(`splat viewer shader failed to compile: ${gl.getShaderInfoLog(shader)}`);
    }
    gl.attachShader(program, shader);
  }
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
    throw new Error(`splat viewer shaders failed to link: ${gl.getProgramInfoLog(program)}`);
  }
  const uniforms = {};
  for (let i = 0; i < gl.getProgramParameter(program, gl.ACTIVE_UNIFORMS); i++) {
    const name = gl.getActiveUniform(program, i).name.replace(/\[0\]$/, "");
    uniforms[name] = gl.getUniformLocation(program, name);
  }
  return { program, uniforms };
}

/** An RGBA32UI texture read with texelFetch (integer textures must not be filtered). */
function integerTexture(gl, width, height) {
  const texture = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, texture);
  gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA32UI, width, height);
  for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
  return texture;
}

/** The GPU side of one SplatSet: data textures filled as the set loads, and the current draw order. */
class GpuScene {
  constructor(gl, splats, maxTextureSize) {
    this.gl = gl;
    this.splats = splats;
    this.uploaded = 0;
    this.drawCount = 0;
    const rows = Math.max(1, Math.ceil(splats.count / ROW_SPLATS));
    this.texture = integerTexture(gl, SPLAT_TEXELS * ROW_SPLATS, rows);
    // Higher-order SH needs a wide texture; without one the DC colour in the main texture is used.
    this.shTexels = splats.shTexels && splats.shTexels * ROW_SPLATS <= maxTextureSize ? splats.shTexels : 0;
    this.shTexture = this.shTexels ? integerTexture(gl, this.shTexels * ROW_SPLATS, rows) : null;
    this.orderBuffer = gl.createBuffer();
  }

  /** Send the rows holding splats decoded since the last call. */
  upload() {
    const { gl, splats } = this;
    if (splats.loaded <= this.uploaded) return false;
    const first = Math.floor(this.uploaded / ROW_SPLATS);
    const last = Math.ceil(splats.loaded / ROW_SPLATS);
    const put = (texture, data, texelsPerSplat) => {
      const width = texelsPerSplat * ROW_SPLATS;
      const words = width * 4;
      const rows = new Uint32Array(words * (last - first));
      rows.set(data.subarray(first * words, Math.min(data.length, last * words)));
      gl.bindTexture(gl.TEXTURE_2D, texture);
      gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, first, width, last - first, gl.RGBA_INTEGER, gl.UNSIGNED_INT, rows);
    };
    put(this.texture, splats.texels, SPLAT_TEXELS);
    if (this.shTexture) put(this.shTexture, splats.sh, this.shTexels);
    this.uploaded = splats.loaded;
    return true;
  }

  setOrder(order) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.orderBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, order, gl.DYNAMIC_DRAW);
    this.drawCount = order.length;
  }

  dispose() {
    const gl = this.gl;
    gl.deleteTexture(this.texture);
    if (this.shTexture) gl.deleteTexture(this.shTexture);
    gl.deleteBuffer(this.orderBuffer);
  }
}

export class SplatRenderer {
  constructor(canvas, background = [0.11, 0.11, 0.13]) {
    const gl = canvas.getContext("webgl2", { antialias: false, premultipliedAlpha: true, alpha: false });
    if (!gl) throw new Error("this browser offers no WebGL2, which the splat viewer needs");
    this.gl = gl;
    this.canvas = canvas;
    this.background = background;
    this.maxTextureSize = gl.getParameter(gl.MAX_TEXTURE_SIZE);
    if (this.maxTextureSize < SPLAT_TEXELS * ROW_SPLATS) {
      throw new Error(`WebGL2 textures are limited to ${this.maxTextureSize} px here; the viewer needs 3072`);
    }
    this.splatProgram = compile(gl, SPLAT_VS, SPLAT_FS);
    this.lineProgram = compile(gl, LINE_VS, LINE_FS);
    this.lineBuffer = gl.createBuffer();
    this.lineVertices = 0;
    // Bound to the SH sampler for scenes without higher-order SH, so that every sampler has a texture.
    this.emptyTexture = integerTexture(gl, 1, 1);
  }

  createScene(splats) {
    return new GpuScene(this.gl, splats, this.maxTextureSize);
  }

  /** Line segments as pairs of points, each with an RGB colour: Float32Array of [x,y,z,r,g,b] per point. */
  setLines(vertices) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.lineBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, vertices, gl.STATIC_DRAW);
    this.lineVertices = vertices.length / 6;
  }

  /** Draw `scene` (may be null) and the lines for a camera {view, proj, eye, focal} at the canvas size. */
  render(scene, camera) {
    const gl = this.gl;
    const { width, height } = this.canvas;
    gl.viewport(0, 0, width, height);
    gl.clearColor(...this.background, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.disable(gl.DEPTH_TEST);
    if (scene && scene.drawCount > 0) this._drawSplats(scene, camera, width, height);
    if (this.lineVertices > 0) this._drawLines(camera);
  }

  _drawSplats(scene, camera, width, height) {
    const gl = this.gl;
    const { program, uniforms } = this.splatProgram;
    gl.useProgram(program);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);  // premultiplied colour, far splats drawn first
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, scene.texture);
    gl.uniform1i(uniforms.u_splats, 0);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, scene.shTexture ?? this.emptyTexture);
    gl.uniform1i(uniforms.u_sh, 1);
    gl.uniform1i(uniforms.u_shTexels, scene.shTexels);
    gl.uniform1i(uniforms.u_shDegree, scene.shTexels ? scene.splats.shDegree : 0);
    gl.uniformMatrix4fv(uniforms.u_view, false, camera.view);
    gl.uniformMatrix4fv(uniforms.u_proj, false, camera.proj);
    gl.uniform2f(uniforms.u_focal, camera.focal, camera.focal);
    gl.uniform2f(uniforms.u_viewport, width, height);
    gl.uniform3fv(uniforms.u_eye, camera.eye);
    const location = gl.getAttribLocation(program, "a_index");
    gl.bindBuffer(gl.ARRAY_BUFFER, scene.orderBuffer);
    gl.enableVertexAttribArray(location);
    gl.vertexAttribIPointer(location, 1, gl.UNSIGNED_INT, 0, 0);
    gl.vertexAttribDivisor(location, 1);
    gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, scene.drawCount);
    gl.vertexAttribDivisor(location, 0);
    gl.disableVertexAttribArray(location);
    gl.disable(gl.BLEND);
  }

  _drawLines(camera) {
    const gl = this.gl;
    const { program, uniforms } = this.lineProgram;
    gl.useProgram(program);
    gl.uniformMatrix4fv(uniforms.u_viewProj, false, camera.viewProj);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.lineBuffer);
    const position = gl.getAttribLocation(program, "a_position");
    const color = gl.getAttribLocation(program, "a_color");
    gl.enableVertexAttribArray(position);
    gl.vertexAttribPointer(position, 3, gl.FLOAT, false, 24, 0);
    gl.enableVertexAttribArray(color);
    gl.vertexAttribPointer(color, 3, gl.FLOAT, false, 24, 12);
    gl.drawArrays(gl.LINES, 0, this.lineVertices);
    gl.disableVertexAttribArray(position);
    gl.disableVertexAttribArray(color);
  }

  dispose() {
    const gl = this.gl;
    gl.deleteBuffer(this.lineBuffer);
    gl.deleteTexture(this.emptyTexture);
    gl.deleteProgram(this.splatProgram.program);
    gl.deleteProgram(this.lineProgram.program);
    gl.getExtension("WEBGL_lose_context")?.loseContext();
  }
}
