// The splat viewer's camera: orbits a target point about a fixed "up" direction, pans in the view plane, zooms
// along the view ray. Matrices follow OpenGL (camera looks along -Z); scenes may use any world convention.
import { add, cross, dot, lookAt, multiply, normalize, perspective, rotate, scale, sub } from "./math3d.js";

export const DEFAULT_FOV_Y = (50 * Math.PI) / 180;
const MIN_POLAR = (3 * Math.PI) / 180;  // keep the view direction away from the up axis

export class OrbitCamera {
  constructor() {
    this.set({ target: [0, 0, 0], forward: [0, 0, 1], up: [0, -1, 0], distance: 1 });
  }

  /** Place the camera: look along `forward` at `target` from `distance` away, `up` as the orbit axis. */
  set({ target, forward, up, distance, fovY = DEFAULT_FOV_Y }) {
    this.target = [...target];
    this.forward = normalize(forward);
    this.up = normalize(up);
    this.distance = distance;
    this.fovY = fovY;
  }

  snapshot() {
    return { target: this.target, forward: this.forward, up: this.up, distance: this.distance, fovY: this.fovY };
  }

  get eye() {
    return sub(this.target, scale(this.forward, this.distance));
  }

  get right() {
    return normalize(cross(this.forward, this.up));
  }

  /** Drag by (dx, dy) pixels: turn about the up axis and tilt, keeping the target in the middle. */
  orbit(dx, dy, viewportHeight) {
    const radiansPerPixel = (2 * Math.PI) / Math.max(200, viewportHeight * 2);
    let forward = rotate(this.forward, this.up, -dx * radiansPerPixel);
    const tilted = rotate(forward, normalize(cross(forward, this.up)), dy * radiansPerPixel);
    const polar = Math.acos(Math.max(-1, Math.min(1, dot(tilted, this.up))));
    if (polar > MIN_POLAR && polar < Math.PI - MIN_POLAR) forward = tilted;
    this.forward = normalize(forward);
  }

  /** Drag by (dx, dy) pixels: move the target so the scene follows the pointer. */
  pan(dx, dy, viewportHeight) {
    const worldPerPixel = (2 * this.distance * Math.tan(this.fovY / 2)) / viewportHeight;
    const screenUp = cross(this.right, this.forward);
    this.target = add(this.target, add(scale(this.right, -dx * worldPerPixel), scale(screenUp, dy * worldPerPixel)));
  }

  zoom(factor) {
    this.distance = Math.max(1e-4, this.distance * factor);
  }

  /** Everything the renderer needs for a viewport of `width` x `height` pixels. */
  matrices(width, height) {
    const eye = this.eye;
    const screenUp = cross(this.right, this.forward);
    const view = lookAt(eye, this.target, screenUp);
    const proj = perspective(this.fovY, width / height, this.distance / 1000, this.distance * 1000);
    const focal = height / 2 / Math.tan(this.fovY / 2);
    return { view, proj, viewProj: multiply(proj, view), eye, focal, forward: this.forward };
  }
}
