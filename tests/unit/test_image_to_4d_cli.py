"""`dimx image-to-4d` on the tiny model: two Ray workers write the same scene as one, and a run that finds its
videos in the cache makes none of them again and writes the same scene."""
import numpy as np
import pytest
from PIL import Image

from dimx_core.cli import main
from dimx_core.distributed.executor import close_pools
from dimx_core.identity.multiview import VideoCache
from dimx_core.tiny import build_tiny_lora

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def inputs(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    image = folder / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 144, 3), dtype=np.uint8)).save(image)
    return ["image-to-4d", "--model", str(tiny_model_dir), "--image", str(image), "--prompt", "a house on a hill",
            "--s-director", str(build_tiny_lora(tiny_model_dir, folder / "s.safetensors", "s")),
            "--t-director", str(build_tiny_lora(tiny_model_dir, folder / "t.safetensors", "t")),
            "--times", "2", "--views", "2", "--steps", "2", "--fit-steps", "20", "--initial-points", "200",
            "--poses", "trajectory", "--device", "cpu"]


def scene_bytes(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_two_workers_write_the_scene_one_writes_and_the_cache_resumes(inputs, tmp_path):
    try:
        for workers in ("1", "2"):
            assert main([*inputs, "--workers", workers, "--out", str(tmp_path / workers),
                         "--cache", str(tmp_path / f"cache{workers}")]) == 0
    finally:
        close_pools()
        ray.shutdown()
    one, two = scene_bytes(tmp_path / "1"), scene_bytes(tmp_path / "2")
    assert "scene.dimx4d.json" in one and one == two
    cache = VideoCache(tmp_path / "cache1")
    made = cache.journal()
    # the temporal video, the reference video, 2 per-frame videos and the refined camera videos, each made once
    assert len(made) == len({entry["key"] for entry in made}) == 5
    assert main([*inputs, "--out", str(tmp_path / "again"), "--cache", str(tmp_path / "cache1")]) == 0
    assert cache.journal() == made and scene_bytes(tmp_path / "again") == one
