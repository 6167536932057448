// Draws a planned camera path (the JSON of GET /dimensionx/trajectory) on a 2D canvas: an orthographic
// overview with the path through the camera centres, camera frustums along it, the first camera highlighted and
// the pivot marked. Cameras are OpenCV camera-to-world (x right, y down, z forward) with pixel intrinsics.
import { add, columns, cross, dot, normalize, rotate, scale, sub } from "./math3d.js";

export const COLOURS = {
  background: "rgb(24, 26, 30)",
  path: "rgb(210, 210, 210)",
  camera: "rgb(80, 190, 255)",
  first: "rgb(255, 140, 30)",
  pivot: "rgb(235, 70, 235)",
  text: "rgb(220, 220, 220)",
};
const MAX_FRUSTUMS = 8;
const MARGIN = 18;
// The overview angle: turned a little from straight behind the first camera, and looking down on the path.
export const DEFAULT_VIEW = { yaw: -0.35, pitch: 0.95 };

/** Check the route's answer and turn it into centres and camera axes. */
export function readTrajectory(json) {
  const poses = json?.c2w_opencv, intrinsics = json?.intrinsics;
  if (!Array.isArray(poses) || poses.length === 0 || !Array.isArray(intrinsics) || intrinsics.length !== poses.length) {
    throw new Error("the trajectory needs non-empty 'c2w_opencv' and 'intrinsics' lists of the same length");
  }
  const cameras = poses.map((c2w, i) => {
    const [right, down, forward, center] = columns(c2w);
    const k = intrinsics[i];
    return { right, down, forward, center, fx: k[0][0], fy: k[1][1], cx: k[0][2], cy: k[1][2] };
  });
  return { cameras, width: json.width, height: json.height, pivot: json.pivot ?? null,
    pattern: json.pattern ?? "", director: json.director ?? "" };
}

/** Indices of the cameras that get a frustum: all of a short path, else an even spread with the ends. */
function frustumIndices(n) {
  if (n <= MAX_FRUSTUMS) return [...Array(n).keys()];
  return [...new Set([...Array(MAX_FRUSTUMS).keys()].map((i) => Math.round((i * (n - 1)) / (MAX_FRUSTUMS - 1))))];
}

/**
 * Draw `json` into `ctx` (a canvas of `width` x `height` pixels). `yaw`/`pitch` (radians) turn the overview about
 * the first camera's up axis. Returns `project(point) -> [x, y]`, the mapping used, so callers can hit-test.
 */
export function drawTrajectory(ctx, width, height, json, { yaw = DEFAULT_VIEW.yaw, pitch = DEFAULT_VIEW.pitch } = {}) {
  const path = readTrajectory(json);
  const { cameras, pivot } = path;
  const first = cameras[0];
  // The overview looks at the scene from behind-above the first camera, turned by yaw and pitch.
  const up = scale(first.down, -1);
  const turned = rotate(first.forward, up, yaw);
  const viewForward = rotate(turned, normalize(cross(turned, up)), -pitch);
  const viewRight = normalize(cross(viewForward, up));
  const viewUp = cross(viewRight, viewForward);

  const spread = Math.max(...cameras.map((c) => Math.hypot(...sub(c.center, first.center))),
    pivot ? Math.hypot(...sub(pivot, first.center)) : 0);
  const size = spread > 1e-6 ? 0.07 * spread : 1;  // frustum depth, in scene units
  const frustums = frustumIndices(cameras.length).map((i) => {
    const c = cameras[i];
    const w = path.width ?? 2 * c.cx, h = path.height ?? 2 * c.cy;
    const corners = [[0, 0], [w, 0], [w, h], [0, h]].map(([u, v]) => add(c.center, add(add(
      scale(c.right, ((u - c.cx) / c.fx) * size), scale(c.down, ((v - c.cy) / c.fy) * size)), scale(c.forward, size))));
    return { index: i, center: c.center, corners };
  });

  const points = [...cameras.map((c) => c.center), ...frustums.flatMap((f) => f.corners), ...(pivot ? [pivot] : [])];
  const flat = points.map((p) => [dot(p, viewRight), dot(p, viewUp)]);
  const minX = Math.min(...flat.map((p) => p[0])), maxX = Math.max(...flat.map((p) => p[0]));
  const minY = Math.min(...flat.map((p) => p[1])), maxY = Math.max(...flat.map((p) => p[1]));
  const top = MARGIN + 30;  // room for the caption
  const pixels = Math.min((width - 2 * MARGIN) / Math.max(maxX - minX, 1e-9),
    (height - top - MARGIN) / Math.max(maxY - minY, 1e-9));
  const originX = width / 2 - ((minX + maxX) / 2) * pixels;
  const originY = (top + height - MARGIN) / 2 + ((minY + maxY) / 2) * pixels;
  const project = (p) => [originX + dot(p, viewRight) * pixels, originY - dot(p, viewUp) * pixels];

  ctx.save();
  ctx.fillStyle = COLOURS.background;
  ctx.fillRect(0, 0, width, height);
  ctx.lineJoin = "round";
  const polyline = (pts, closed) => {
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(...project(p)) : ctx.moveTo(...project(p))));
    if (closed) ctx.closePath();
    ctx.stroke();
  };

  ctx.strokeStyle = COLOURS.path;
  ctx.lineWidth = 1.5;
  polyline(cameras.map((c) => c.center));

  for (const frustum of [...frustums].reverse()) {  // the first camera last, on top
    const highlighted = frustum.index === 0;
    ctx.strokeStyle = highlighted ? COLOURS.first : COLOURS.camera;
    ctx.lineWidth = highlighted ? 3 : 1.5;
    if (highlighted) {
      ctx.fillStyle = COLOURS.first;
      ctx.globalAlpha = 0.35;
      ctx.beginPath();
      frustum.corners.forEach((p, i) => (i ? ctx.lineTo(...project(p)) : ctx.moveTo(...project(p))));
      ctx.fill();
      ctx.globalAlpha = 1;
    }
    polyline(frustum.corners, true);
    for (const corner of frustum.corners) polyline([frustum.center, corner]);
  }

  if (pivot) {
    // The first camera's line of sight to the pivot, dashed.
    ctx.setLineDash([4, 4]);
    ctx.strokeStyle = COLOURS.pivot;
    ctx.lineWidth = 1;
    polyline([first.center, pivot]);
    ctx.setLineDash([]);
    const [x, y] = project(pivot);
    ctx.strokeStyle = ctx.fillStyle = COLOURS.pivot;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(x, y, 6, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.fillRect(x - 2, y - 2, 5, 5);
  }

  ctx.fillStyle = COLOURS.text;
  ctx.font = "12px sans-serif";
  ctx.textBaseline = "top";
  const imageSize = path.width && path.height ? `${path.width}×${path.height}` : "";
  const caption = [path.pattern, `${cameras.length} frames`, imageSize];
  ctx.fillText(caption.filter(Boolean).join(" · "), 6, 6);
  if (path.director) ctx.fillText(`director: ${path.director}`, 6, 22);
  ctx.restore();
  return project;
}
