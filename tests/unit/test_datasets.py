"""Dimension-variant datasets: spatial clips of the example scene along planned paths (occupancy check included),
temporal clips curated by the static-camera test (held to >= 95% right on synthetic clips with known truth), and
the dataset layout both write, which reopens and refuses damaged folders by name."""
import json
import math
import re
import shutil

import numpy as np
import pytest
import torch

from dimx_core.camera import Trajectory
from dimx_core.camera.formats import read_transforms_json
from dimx_core.datasets.captions import caption, parse_templates
from dimx_core.datasets.clips import read_clip, write_clip
from dimx_core.datasets.layout import ClipGeometry, open_dataset
from dimx_core.datasets.occupancy import SceneOccupancy
from dimx_core.datasets.settings import OccupancySettings, SpatialSettings, TemporalSettings
from dimx_core.datasets.spatial import Scene, build_spatial_dataset, scene_frame
from dimx_core.datasets.temporal import curate_temporal_dataset, find_videos, judge_clip
from dimx_core.files import atomic_folder
from dimx_core.recon.files import load_scene
from dimx_core.recon.render import CPU_RASTERIZER, look_at_c2w, render_views
from harness.comfyhost import REPO
from tests.synthetic_videos import moving_camera, still_camera, truth_clips

SCENE = REPO / "workflows" / "inputs" / "dimensionx_example_ball.ply"
TINY = ClipGeometry(144, 96, 17, 8.0)


@pytest.fixture(scope="module")
def ball():
    return load_scene(SCENE)


@pytest.fixture(scope="module")
def spatial(ball, tmp_path_factory):
    folder = tmp_path_factory.mktemp("spatial") / "dataset"
    settings = SpatialSettings(patterns=("orbit_left", "truck_left"), clips_per_pattern=1, attempts=10,
                               templates="orbit_left: a ball, circling left\n*: a ball, {motion}, {magnitude}")
    with atomic_folder(folder) as partial:
        summary = build_spatial_dataset(partial, [Scene("ball", ball)], TINY, settings, rasterizer=CPU_RASTERIZER)
    return folder, summary


def test_a_spatial_dataset_reopens_with_each_clips_pattern_poses_and_the_report(spatial, ball):
    folder, summary = spatial
    dataset = open_dataset(folder)
    assert dataset.clips[0].caption == "a ball, circling left"
    assert re.fullmatch(r"a ball, slide left \(-x\), 0\.\d+ scene units", dataset.clips[1].caption)
    assert dataset.info["kind"] == "spatial" and dataset.info["frames"] == 17 and summary.clips == 2
    assert (folder / "videos.txt").read_text().split() == ["videos/00000.mp4", "videos/00001.mp4"]
    for index, clip in enumerate(dataset.clips):
        record = json.loads((folder / "clips" / f"{index:05d}.json").read_text())
        assert record["pattern"] == ("orbit_left", "truck_left")[index] and record["scene"] == "ball"
        poses, _ = read_transforms_json(folder / record["cameras"])
        assert len(poses) == 17 and np.allclose(poses.c2w_opencv[0], record["start_c2w_opencv"], atol=1e-9)
        video = read_clip(clip.video)
        assert video.shape == (17, 96, 144, 3)
        rendered = render_views(ball, poses)
        psnr = -10 * math.log10(float((video - rendered).pow(2).mean()))
        assert psnr > 30, f"clip {index} does not show its recorded poses (PSNR {psnr:.1f} dB)"
    report = (folder / "report.txt").read_text()
    assert report.startswith(f"2 of {2 + summary.rejected} candidate clips accepted")
    assert summary.preview.shape == (2, 96, 3 * 144, 3)


def test_the_orbit_turns_about_the_scene_centre(spatial, ball):
    folder, _ = spatial
    poses, _ = read_transforms_json(folder / "clips" / "00000.transforms.json")
    focus = scene_frame(ball).focus
    distances = np.linalg.norm(poses.positions - focus, axis=1)
    assert np.ptp(distances) < 1e-6 and np.allclose(poses.pivot, focus, atol=1e-6)
    turned = np.degrees(np.arccos(np.clip((np.trace(poses.c2w_opencv[0, :3, :3].T @ poses.c2w_opencv[-1, :3, :3])
                                           - 1) / 2, -1, 1)))
    assert turned == pytest.approx(30.0, abs=1e-6)


def test_a_forward_facing_capture_focuses_on_the_scene_itself(ball):
    """Parallel optical axes meet nowhere: the focus falls back to the opacity-weighted centre of the Gaussians."""
    scene = load_scene(SCENE)
    poses = np.repeat(np.eye(4)[None], 3, axis=0)
    poses[:, 0, 3] = [-0.2, 0.0, 0.2]
    scene.cameras = Trajectory(poses, np.repeat(ball.cameras.intrinsics[:1], 3, axis=0), 96, 64)
    frame = scene_frame(scene)
    assert np.allclose(frame.focus, [0.0, 0.0, 2.0], atol=0.02) and frame.distance == pytest.approx(2.0, abs=0.05)


def _path(positions, focus, down=(0.0, 1.0, 0.0)) -> Trajectory:
    poses = np.stack([look_at_c2w(p, focus + np.array([0.0, 0.0, 1e-3]) if np.allclose(p, focus) else focus, down)
                      for p in positions])
    k = np.array([[100.0, 0, 72], [0, 100.0, 48], [0, 0, 1]])
    return Trajectory(poses, np.repeat(k[None], len(poses), axis=0), 144, 96)


@pytest.mark.parametrize("name, positions, reason", [
    ("stays in the camera region", [[-0.4, 0.0, 0.05], [-0.5, 0.0, 0.07]], None),
    ("leaves the box", [[-0.4, 0.0, 0.05], [-0.4, -0.6, 0.05]], "leaves the camera region: frame 1"),
    ("dives at the ball", [[0.0, 0.0, 0.0], [0.0, 0.0, 1.3]], "too close to the surface"),
])
def test_the_occupancy_check_refuses_paths_that_leave_or_touch(ball, name, positions, reason):
    settings = OccupancySettings(box_margin=1.0)  # a box wide enough to reach the ball: only the surface refuses
    if name == "leaves the box":
        settings = OccupancySettings()
    space = SceneOccupancy(ball, scene_frame(ball).distance, CPU_RASTERIZER, settings)
    found = space.check(_path(np.array(positions, dtype=float), scene_frame(ball).focus))
    assert (found is None) if reason is None else (found or "").startswith(reason), found


def test_a_position_inside_the_ball_is_inside_the_surface(ball):
    space = SceneOccupancy(ball, 2.0, CPU_RASTERIZER, OccupancySettings(box_margin=2.0, clearance=0.05))
    inside = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 2.1]])
    found = space.check(_path(inside, np.array([0.0, 0.0, 3.0])))
    assert found is not None and found.startswith(("inside or behind the surface", "too close to the surface"))


def test_a_scene_too_small_for_a_pattern_is_named_and_an_empty_dataset_is_refused(ball, tmp_path):
    settings = SpatialSettings(patterns=("pedestal_up",), clips_per_pattern=1, attempts=3)
    with pytest.raises(ValueError, match="(?s)no clip was accepted out of 3 candidates .*3 x leaves the camera region.*"
                                         "scene 'ball' is too small for pedestal_up"):
        with atomic_folder(tmp_path / "none") as partial:
            build_spatial_dataset(partial, [Scene("ball", ball)], TINY, settings, rasterizer=CPU_RASTERIZER)
    assert list(tmp_path.iterdir()) == []


def test_a_scene_without_cameras_is_refused(ball, tmp_path):
    bare = load_scene(SCENE)
    bare.cameras = None
    with pytest.raises(ValueError, match="the scene carries no cameras"):
        build_spatial_dataset(tmp_path, [Scene("bare", bare)], TINY, SpatialSettings(patterns=("orbit_left",)),
                              rasterizer=CPU_RASTERIZER)


def test_caption_templates_per_pattern_and_their_errors():
    templates = parse_templates("orbit_left: around {scene}\n*: {scene} seen {motion}", ("orbit_left", "dolly_in"),
                                "default")
    assert caption(templates, "orbit_left", {"scene": "a car", "motion": "m"}) == "around a car"
    assert caption(templates, "dolly_in", {"scene": "a car", "motion": "closer"}) == "a car seen closer"
    assert parse_templates("", ("a",), "plain")["*"] == "plain"
    with pytest.raises(ValueError, match=r"uses \{colour\}; the placeholders are \{scene\}"):
        caption(parse_templates("{colour}", (), "x"), "a", {"scene": "s"})
    with pytest.raises(ValueError, match="names no pattern, and '\\*:' is given too"):
        parse_templates("loose words\n*: other", ("orbit_left",), "x")
    with pytest.raises(ValueError, match="unknown pattern 'orbit_sideways'"):
        SpatialSettings(patterns=("orbit_sideways",))


def test_the_static_camera_test_is_right_on_at_least_95_percent_of_known_clips(tmp_path):
    """A still camera watching a disc move, a camera panning and one zooming over a static scene; 1-8 px per
    frame; three textures; written as H.264 like users' videos."""
    clips = truth_clips(tmp_path)
    verdicts = [(clip, judge_clip(read_clip(clip.path))) for clip in clips]
    wrong = [f"{clip.name}: static share {v.static_share:.2f}, background flow {v.background_flow:.2f} -> "
             f"{'static' if v.static else 'moving'}" for clip, v in verdicts if v.static != clip.static]
    accuracy = 1 - len(wrong) / len(clips)
    assert len(clips) == 36 and accuracy >= 0.95, f"{accuracy:.0%} right; wrong: {wrong}"


def test_curation_cuts_videos_into_model_length_clips_and_reports_every_one(tmp_path):
    videos = tmp_path / "videos"
    frames = {"long_still": still_camera("checker", 2.0, 40, 160, 120, 5),   # 4:3, 2 clips of 17 at stride 1
              "pan": moving_camera("fine", 3.0, 20, 144, 96, 6, "pan"),
              "short": still_camera("fine", 1.0, 10, 144, 96, 7)}
    for name, video in frames.items():
        write_clip(videos / f"{name}.mp4", torch.from_numpy(video).float() / 255, 8.0)
    (videos / "broken.mp4").write_bytes(b"\x00" * 64)
    (videos / "long_still.txt").write_text("a checkered floor, a disc slides across it")
    with atomic_folder(tmp_path / "dataset") as partial:
        summary = curate_temporal_dataset(partial, find_videos(videos), TINY, TemporalSettings(frame_stride=1))
    dataset = open_dataset(tmp_path / "dataset")
    assert summary.clips == 2 and [c.caption for c in dataset.clips] == ["a checkered floor, a disc slides across it"] * 2
    assert all(read_clip(c.video).shape == (17, 96, 144, 3) for c in dataset.clips)
    record = json.loads((tmp_path / "dataset" / "clips" / "00001.json").read_text())
    assert record["first_frame"] == 17 and record["static"] and record["background_flow"] < 0.3
    report = summary.report
    assert "pan.mp4" in report and "camera moves" in report
    assert "too short" in report and "broken.mp4" in report and "unreadable" in report


def test_a_folder_whose_videos_all_move_leaves_no_dataset(tmp_path):
    videos = tmp_path / "videos"
    write_clip(videos / "pan.mp4", torch.from_numpy(moving_camera("fine", 3.0, 17, 144, 96, 1, "pan")) / 255.0, 8.0)
    with pytest.raises(ValueError, match="no clip was accepted out of 1 candidates .*camera moves"):
        with atomic_folder(tmp_path / "dataset") as partial:
            curate_temporal_dataset(partial, find_videos(videos), TINY, TemporalSettings())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["videos"]


def test_a_folder_without_videos_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("no video here")
    with pytest.raises(ValueError, match="holds no videos"):
        find_videos(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_videos(tmp_path / "missing")


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "prompts.txt").unlink(), "has no prompts.txt"),
    (lambda f: (f / "prompts.txt").write_text("only one caption\n"), "prompts.txt has 1 lines but videos.txt lists 2"),
    (lambda f: (f / "videos" / "00001.mp4").unlink(), "videos.txt line 2 lists 'videos/00001.mp4', which is missing"),
    (lambda f: (f / "videos.txt").write_text("../x.mp4\nvideos/00001.mp4\n"), "line 1 '../x.mp4' points outside"),
    (lambda f: (f / "prompts.txt").write_text(" \na\n"), "prompts.txt line 1: the caption is empty"),
])
def test_a_damaged_dataset_folder_is_refused_by_name(spatial, tmp_path, damage, message):
    folder = tmp_path / "copy"
    shutil.copytree(spatial[0], folder)
    damage(folder)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        open_dataset(folder)
