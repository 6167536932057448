"""Camera poses for generated frames, without learned pose models.

Two sources: structure-from-motion on the frames themselves (pycolmap: SIFT, sequential matching, incremental
mapping, CPU), or the requested trajectory. SfM poses live in an arbitrary similarity frame; they are mapped
into the trajectory's frame and scale by a Sim(3) fit, and that fit's residual is the measure of how well the
video followed the request (a generated video that turned 36 degrees when 30 were asked is common).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..camera import Trajectory
from ..hooks import NO_HOOKS, Hooks
from ..optional import require

# "fixed" skips refinement: at gsplat's pose rate it moves a camera by at most ~0.1 degree, within noise of keeping the
# poses on exact and on 0.5-degree-off ones, and costs ~20% of a 7000-step fit on the H200
# (bench/RESULTS-recon-poses-device.md). So "auto" keeps the trajectory as given where SfM does not replace it;
# "trajectory" asks for refinement.
POSE_MODES = ("auto", "trajectory", "fixed", "sfm")
AUTO_KEEPS = "poses: the requested trajectory as given, not refined (poses=trajectory refines it with the scene)"
# measured SfM noise on the synthetic orbit: 0.8-1.5 deg at 128x96 and up, up to 3 deg at 96x64
ROTATION_WARN_DEG, ROTATION_REFUSE_DEG = 3.0, 10.0
# SfM on generated frames fixes the direction of travel only to several degrees (see align_sim3)
DIRECTION_WARN_DEG, DIRECTION_REFUSE_DEG = 12.0, 30.0
MIN_REGISTERED_SHARE = 0.9  # SfM replaces the trajectory only when it placed at least this share of frames
# ... and only when a typical frame sees this many triangulated points: on low-texture frames SfM registers every
# frame from a few dozen points each, with poses degrees off (measured on the synthetic low-texture orbit at
# 96x64: a median of 63 points per frame, 2.9 deg off; the textured orbit at 128x96: 116 points, within 2 deg)
MIN_POINTS_PER_FRAME = 100


class PoseMismatch(ValueError):
    """The frames' camera motion contradicts the requested trajectory too much to fit one to the other."""


@dataclass
class SfmResult:
    c2w_opencv: dict[int, np.ndarray]   # frame index -> pose in SfM's own frame
    points: np.ndarray                  # (P, 3) in SfM's frame
    colors: np.ndarray                  # (P, 3) in 0..1
    observations: dict[int, int] = field(default_factory=dict)  # frame index -> triangulated points it sees

    @property
    def registered(self) -> list[int]:
        return sorted(self.c2w_opencv)


@dataclass
class PoseCheck:
    """How the SfM poses differ from the requested trajectory: rotation of each camera relative to the first
    (gauge-free), and direction of travel from the first camera after the Sim(3) fit."""
    registered: int
    frames: int
    rotation_error_deg: np.ndarray      # per registered frame
    direction_error_deg: np.ndarray     # per registered frame that moved away from the first one
    rotation_span_ratio: float | None   # total turn of the video / total turn requested
    scale: float                        # trajectory units per SfM unit
    loop_closure_deg: float | None = None  # closed loops: how far the last frame is from its place beside the first

    @property
    def max_rotation_error(self) -> float:
        return float(self.rotation_error_deg.max()) if len(self.rotation_error_deg) else 0.0

    @property
    def median_direction_error(self) -> float:
        return float(np.median(self.direction_error_deg)) if len(self.direction_error_deg) else 0.0

    @property
    def verdict(self) -> str:
        """'agrees', 'differs' (worth a warning) or 'mismatch' (the two cannot describe the same motion)."""
        if self.max_rotation_error > ROTATION_REFUSE_DEG or self.median_direction_error > DIRECTION_REFUSE_DEG:
            return "mismatch"
        if self.max_rotation_error > ROTATION_WARN_DEG or self.median_direction_error > DIRECTION_WARN_DEG:
            return "differs"
        return "agrees"

    def summary(self) -> str:
        span = ("" if self.rotation_span_ratio is None
                else f", the video turns {self.rotation_span_ratio:.2f}x the requested angle")
        loop = ("" if self.loop_closure_deg is None else
                f"; closed loop (its ends matched to each other): the last frame is {self.loop_closure_deg:.2f} deg "
                "from its requested place beside the first")
        return (f"SfM placed {self.registered}/{self.frames} frames; against the trajectory: relative "
                f"rotation error median {np.median(self.rotation_error_deg):.2f} deg, max "
                f"{self.max_rotation_error:.2f} deg; translation-direction error median "
                f"{self.median_direction_error:.1f} deg{span}{loop} -> {self.verdict}")


@dataclass
class PoseChoice:
    source: str                         # "sfm", "trajectory" (refined by the fit) or "fixed" (kept as given)
    cameras: Trajectory                 # one pose per frame kept, in the trajectory's frame and scale
    kept: list[int]                     # indices of the frames these cameras belong to
    points: np.ndarray | None = None    # SfM points in the trajectory's frame, for initialisation
    colors: np.ndarray | None = None
    check: PoseCheck | None = None
    notes: list[str] = field(default_factory=list)


# --- structure from motion -----------------------------------------------------------------------------------------

SEQUENTIAL_OVERLAP = 8  # frames each frame is matched with, forward along the video


def loop_closing_pairs(count: int, overlap: int = SEQUENTIAL_OVERLAP) -> list[tuple[int, int]]:
    """The pairs sequential matching would add if the video wrapped around: each of the last frames with the first
    frames fewer than `overlap` steps ahead of it across the seam (the last frame with the first, ...)."""
    return [(i, j) for i in range(max(count - overlap, 0), count) for j in range(min(overlap, count))
            if 0 < (j - i) % count <= overlap and j < i]


def run_sfm(frames: np.ndarray, intrinsics: np.ndarray, *, loop: bool = False, hooks: Hooks = NO_HOOKS,
            workdir: str | Path | None = None) -> SfmResult | None:
    """pycolmap on (N, H, W, 3) frames in 0..1 with known pinhole intrinsics; None when no model forms. `loop`: the
    video is a closed loop (its last frame sees what its first one sees), so the frames across the seam are matched
    as well and the mapper's bundle adjustment closes the loop instead of letting it drift open."""
    pycolmap = require("pycolmap", "structure-from-motion poses")
    from PIL import Image

    pycolmap.logging.minloglevel = 2  # COLMAP's per-image INFO lines would flood ComfyUI's console
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        root = Path(scratch)
        (root / "images").mkdir()
        for index, frame in enumerate(frames):
            Image.fromarray((np.clip(frame, 0, 1) * 255).round().astype(np.uint8)).save(
                root / "images" / f"{index:05d}.png")
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = "PINHOLE"
        reader.camera_params = ",".join(repr(float(v)) for v in (intrinsics[0, 0], intrinsics[1, 1],
                                                                  intrinsics[0, 2], intrinsics[1, 2]))
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.use_gpu = False
        extraction.sift.max_num_features = 4096
        extraction.sift.peak_threshold = 0.002  # generated frames are smooth; COLMAP's 0.0067 finds too few
        database = root / "database.db"
        pycolmap.extract_features(database, root / "images", camera_mode=pycolmap.CameraMode.SINGLE,
                                  reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)
        hooks.step(1, 3)
        matching = pycolmap.FeatureMatchingOptions()
        matching.use_gpu = False
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = SEQUENTIAL_OVERLAP
        pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing,
                                  device=pycolmap.Device.cpu)
        if loop:
            pairs = root / "loop_pairs.txt"
            pairs.write_text("".join(f"{i:05d}.png {j:05d}.png\n" for i, j in loop_closing_pairs(len(frames))))
            pycolmap.match_image_pairs(database, matching_options=matching,
                                       pairing_options=pycolmap.ImportedPairingOptions(match_list_path=pairs),
                                       device=pycolmap.Device.cpu)
        hooks.step(2, 3)
        options = pycolmap.IncrementalPipelineOptions()
        options.ba_refine_focal_length = False   # the trajectory's intrinsics are what the frames were made with
        options.ba_refine_principal_point = False
        options.ba_refine_extra_params = False
        options.multiple_models = False
        token = pycolmap.CancellationToken()

        def next_image() -> None:
            if hooks.should_stop():
                token.cancel()

        models = pycolmap.incremental_mapping(database, root / "images", root / "sparse", options=options,
                                              next_image_callback=next_image, cancellation_token=token)
        hooks.step(3, 3)
    if not models:
        return None
    model = max(models.values(), key=lambda m: m.num_reg_images())
    poses, observations = {}, {}
    for image_id in model.reg_image_ids():
        image = model.images[image_id]
        observations[int(Path(image.name).stem)] = int(image.num_points3D)
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        w2c = np.eye(4)
        w2c[:3] = pose.matrix()
        poses[int(Path(image.name).stem)] = np.linalg.inv(w2c)
    points = np.array([p.xyz for p in model.points3D.values()]).reshape(-1, 3)
    colors = np.array([p.color for p in model.points3D.values()]).reshape(-1, 3) / 255.0
    return SfmResult(poses, points, colors, observations)


# --- alignment and the check ---------------------------------------------------------------------------------------

def align_sim3(source_c2w: np.ndarray, target_c2w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (scale, rotation, translation) mapping camera poses `source_c2w` onto `target_c2w`.

    The rotation comes from the camera orientations, scale and translation from the centres by least squares.
    Not Umeyama on the centres alone: SfM on a narrow-field orbit has a rotation-translation ambiguity (measured
    on the synthetic orbit: relative rotations right to 1%, yet the path tilted ~6 deg against the cameras,
    with equal epipolar error), so a fit to positions would tilt every camera; orientations are what SfM gets
    right, and what makes renders along the trajectory line up. It also works for straight-line paths, where
    positions cannot fix the rotation about the line."""
    u, _, vt = np.linalg.svd(np.einsum("nij,nkj->ik", target_c2w[:, :3, :3], source_c2w[:, :3, :3]))
    rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    src, dst = source_c2w[:, :3, 3], target_c2w[:, :3, 3]
    a, b = (rotation @ (src - src.mean(axis=0)).T).T, dst - dst.mean(axis=0)
    scale = float((a * b).sum() / (a ** 2).sum()) if (a ** 2).sum() > 1e-18 else 1.0
    return scale, rotation, dst.mean(axis=0) - scale * rotation @ src.mean(axis=0)


def apply_sim3(c2w: np.ndarray, scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    out = np.array(c2w, dtype=np.float64, copy=True)
    out[:, :3, :3] = rotation @ c2w[:, :3, :3]
    out[:, :3, 3] = scale * (rotation @ c2w[:, :3, 3].T).T + translation
    return out


def rotation_angle_deg(rotations: np.ndarray) -> np.ndarray:
    """Angle of each rotation matrix (..., 3, 3) in degrees."""
    cosine = (np.trace(rotations, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def unwrapped_turn_deg(relative: np.ndarray, axis: np.ndarray) -> float:
    """The total turn about `axis` of rotations relative to the first camera (N, 3, 3), unwrapped across 180
    degrees: a full loop reads about 360, where the end-to-end angle would read a few degrees."""
    axis = axis / np.linalg.norm(axis)
    across = np.cross(axis, np.eye(3)[np.argmin(np.abs(axis))])
    across /= np.linalg.norm(across)
    turned = relative @ across
    angles = np.arctan2(np.cross(across, turned) @ axis, turned @ across)
    return float(np.degrees(np.unwrap(angles))[-1])


def compare_poses(estimated_c2w: np.ndarray, requested_c2w: np.ndarray, frames: int,
                  loop: bool = False) -> tuple[PoseCheck, tuple]:
    """Fit `estimated` to `requested` (same frames, in order) and measure what the fit cannot explain:
    each camera's rotation relative to the first one, and its direction of travel from the first one. `loop`: the
    frames are a closed loop from its first to its last frame; the turn is then the unwrapped turn, and the last
    frame's rotation error says how well the loop closes."""
    sim3 = align_sim3(estimated_c2w, requested_c2w)
    aligned = apply_sim3(estimated_c2w, *sim3)
    relative_requested = np.einsum("ji,njk->nik", requested_c2w[0, :3, :3], requested_c2w[:, :3, :3])
    relative_estimated = np.einsum("ji,njk->nik", estimated_c2w[0, :3, :3], estimated_c2w[:, :3, :3])
    rotation_error = rotation_angle_deg(np.einsum("nji,njk->nik", relative_requested, relative_estimated))
    moved_requested = requested_c2w[:, :3, 3] - requested_c2w[0, :3, 3]
    moved_aligned = aligned[:, :3, 3] - aligned[0, :3, 3]
    lengths = np.linalg.norm(moved_requested, axis=1)
    moving = lengths > 0.05 * max(lengths.max(), 1e-12)
    if moving.any():
        cosine = (moved_requested[moving] * moved_aligned[moving]).sum(axis=1) / (
            lengths[moving] * np.linalg.norm(moved_aligned[moving], axis=1).clip(1e-12))
        direction_error = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
    else:
        direction_error = np.zeros(0)
    if loop:
        axis = Rotation.from_matrix(relative_requested[1]).as_rotvec()
        requested_turn = unwrapped_turn_deg(relative_requested, axis)
        ratio = unwrapped_turn_deg(relative_estimated, axis) / requested_turn
    else:
        requested_turn = rotation_angle_deg(relative_requested[-1])
        ratio = float(rotation_angle_deg(relative_estimated[-1]) / requested_turn) if requested_turn > 1.0 else None
    check = PoseCheck(len(estimated_c2w), frames, rotation_error, direction_error, ratio, sim3[0],
                      float(rotation_error[-1]) if loop else None)
    return check, sim3


def choose_poses(frames: np.ndarray, trajectory: Trajectory, mode: str = "auto", *, hooks: Hooks = NO_HOOKS,
                 workdir: str | Path | None = None) -> PoseChoice:
    """Poses for `frames` in the trajectory's frame and scale, by `mode`:

    - "trajectory": the requested poses (the optimiser refines them later; nothing is measured here);
    - "fixed": the requested poses exactly as given, never refined (poses known to be exact: the fastest fit);
    - "sfm": SfM poses, Sim(3)-fitted to the trajectory; fails when SfM cannot place enough frames;
    - "auto": SfM when it places enough frames and agrees with the request (a loud note when it merely
      differs); else the trajectory as given, as "fixed" keeps it (SfM unavailable, failed or not to be
      trusted); refuses (PoseMismatch) when SfM, having placed at least half the frames, says the video's motion
      contradicts the request, because either choice would then be a guess."""
    if mode not in POSE_MODES:
        raise ValueError(f"poses must be one of {', '.join(POSE_MODES)}, got {mode!r}")
    everything = list(range(len(trajectory)))
    if mode == "fixed":
        return PoseChoice("fixed", trajectory, everything,
                          notes=["poses: the requested trajectory exactly as given, not refined; the video's motion "
                                 "was not checked by SfM"])
    if mode == "trajectory":
        return PoseChoice("trajectory", trajectory, everything,
                          notes=["poses: the requested trajectory, refined jointly with the scene (the first "
                                 "camera the fit sees fixed); the video's motion was not checked by SfM"])
    loop = trajectory.closes_loop
    try:
        sfm = run_sfm(frames, trajectory.intrinsics[0], loop=loop, hooks=hooks, workdir=workdir)
        failure = "it found no consistent model" if sfm is None else None
    except ImportError as err:
        if mode == "sfm":
            raise
        sfm, failure = None, str(err)
    if sfm is not None and len(sfm.registered) < 3:
        sfm, failure = None, f"it placed only {len(sfm.registered)} of {len(frames)} frames"
    if sfm is None:
        if mode == "sfm":
            raise ValueError(f"structure-from-motion failed on these frames ({failure}); use poses=trajectory "
                             "or poses=auto to fit with the requested trajectory instead")
        return PoseChoice("fixed", trajectory, everything,
                          notes=[f"{AUTO_KEEPS}; SfM could not check the video's motion ({failure})"])
    registered = sfm.registered
    estimated = np.stack([sfm.c2w_opencv[i] for i in registered])
    both_ends = loop and registered[0] == 0 and registered[-1] == len(frames) - 1
    check, sim3 = compare_poses(estimated, trajectory.c2w_opencv[registered], len(frames), loop=both_ends)
    enough = len(registered) >= MIN_REGISTERED_SHARE * len(frames)
    notes = [check.summary()]
    support = float(np.median([sfm.observations.get(i, 0) for i in registered]))
    if support < MIN_POINTS_PER_FRAME:
        weak = (f"SfM placed {len(registered)}/{len(frames)} frames, but from a median of {support:.0f} "
                f"triangulated points per frame (at least {MIN_POINTS_PER_FRAME} are needed to trust its poses: "
                "low-texture frames give poses degrees off)")
        if mode == "auto":
            notes.append(f"{AUTO_KEEPS}; {weak}, so neither its poses nor its verdict ('{check.verdict}') replace "
                         "the trajectory")
            return PoseChoice("fixed", trajectory, everything, check=check, notes=notes)
        notes.append(f"WARNING: {weak}; poses=sfm uses them anyway")
    if mode == "auto" and check.verdict == "mismatch" and len(registered) >= 0.5 * len(frames):
        raise PoseMismatch(
            f"the frames' camera motion contradicts the requested trajectory ({check.summary()}). Fitting either "
            "one would warp the scene. Check that the trajectory matches the director and magnitude that made "
            "the video; or choose poses=sfm to follow the video's own motion, or poses=trajectory to force the "
            "requested path.")
    if mode == "auto" and not enough:
        notes.append(f"{AUTO_KEEPS}; SfM placed only {len(registered)}/{len(frames)} frames, too few to replace it")
        if check.verdict != "agrees":
            notes.append("WARNING: on the frames SfM could place, the video does not move the way the trajectory "
                         "asks; the geometry may be warped (check the director and magnitude, or use poses=sfm)")
        return PoseChoice("fixed", trajectory, everything, check=check, notes=notes)
    if check.verdict != "agrees":
        notes.append("WARNING: the video does not move the way the trajectory asks; the scene follows the video's "
                     "own motion (SfM), fitted to the trajectory's frame as closely as a similarity allows")
    aligned = apply_sim3(estimated, *sim3)
    cameras = replace(trajectory, c2w_opencv=aligned, intrinsics=trajectory.intrinsics[registered],
                      meta={**trajectory.meta, "pose_source": "sfm"})
    scale, rotation, translation = sim3
    points = scale * sfm.points @ rotation.T + translation
    if len(registered) < len(frames):
        notes.append(f"{len(frames) - len(registered)} frames SfM could not place are left out of the fit")
    return PoseChoice("sfm", cameras, registered, points, sfm.colors, check, notes)


def describe_refinement(requested: Trajectory, refined: Trajectory) -> str:
    """How far the optimiser moved the cameras; a WARNING when that is far enough to distrust the trajectory."""
    turn = rotation_angle_deg(np.einsum("nji,njk->nik", requested.c2w_opencv[:, :3, :3], refined.c2w_opencv[:, :3, :3]))
    extent = np.linalg.norm(requested.positions - requested.positions.mean(axis=0), axis=1).max()
    reference = max(extent, 1e-3 * max(np.linalg.norm(requested.positions, axis=1).max(), 1.0))
    shift = np.linalg.norm(refined.positions - requested.positions, axis=1) / reference
    suspicious = turn.max() > ROTATION_WARN_DEG or shift.max() > 0.2
    text = (f"pose refinement moved the cameras by up to {turn.max():.2f} deg and {100 * shift.max():.1f}% of the "
            f"path's size")
    if suspicious:
        text = ("WARNING: " + text + ": the video probably does not follow the requested trajectory, and the "
                "geometry may be warped; check the director and magnitude, or use poses=sfm")
    return text
