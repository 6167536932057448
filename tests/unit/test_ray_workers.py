"""Ray workers on this machine (two CPU workers, the tiny model): the multi-view grid they make equals the
single-process grid bit for bit; a worker killed mid-run costs nothing but its task, run again elsewhere; Cancel
stops every worker, leaves no partial file, and the next run resumes from the cache."""
import time

import pytest
import torch

from dimx_core.directors import schedule
from dimx_core.directors.adapters import Director, attach
from dimx_core.directors.formats import read_lora
from dimx_core.distributed.executor import WorkerPool, WorkerSettings, WorkersSpec
from dimx_core.hooks import Hooks, Interrupted
from dimx_core.identity.latents import build_guide, encode_video
from dimx_core.identity.multiview import VideoCache, generate_multiview, per_frame_requests
from dimx_core.identity.refine import refine_videos
from dimx_core.tiny import build_tiny_lora
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.runtime import Runtime

ray = pytest.importorskip("ray")
CPU = torch.device("cpu")
QUIET = Runtime(place=lambda module: CPU, preview_every=0)


@pytest.fixture(scope="module")
def one_thread():
    """Workers and this process multiply with one thread each, so their float sums run in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def parts(tiny_model_dir, one_thread):
    return load_diffusers_folder(tiny_model_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
def pool(parts):
    workers = WorkerPool(WorkersSpec(count=2, cpu=True, settings=WorkerSettings(threads=1)))
    yield workers
    workers.close()
    ray.shutdown()


@pytest.fixture(scope="module")
def requests(parts, tiny_model_dir, tmp_path_factory):
    lora = read_lora(build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("lora") / "s.safetensors", "s"))
    directors = attach(parts.transformer, [Director("orbit", "S", 1.0, lora)], "tiny")
    reference = encode_video(parts, torch.rand(17, 96, 144, 3, generator=torch.Generator().manual_seed(3)), QUIET.place)
    guide = build_guide(reference, 0.9, 0.5, 0, 1, seed=0)
    frames = torch.rand(3, 96, 144, 3, generator=torch.Generator().manual_seed(1))
    shared = VideoRequest(None, "a house", settings=SamplerSettings(steps=2), directors=directors,
                          schedule=schedule.constant(["orbit"], 2), start=guide.start, blend=guide.blend)
    return per_frame_requests(frames, shared)


def test_the_workers_grid_equals_the_single_process_grid_bit_for_bit(parts, pool, requests, tmp_path):
    alone = generate_multiview(parts, requests, QUIET)
    progress = []
    cache = VideoCache(tmp_path)
    spread = generate_multiview(parts, requests, QUIET.with_hooks(Hooks(progress=lambda s, t, p: progress.append((s, t)))),
                                cache=cache, workers=pool)
    assert torch.equal(spread, alone)
    made_by = [entry["made_by"] for entry in cache.journal()]
    assert len(made_by) == 3 and len(set(made_by)) == 2  # both workers took videos
    assert progress[-1] == (6, 6) and all(b[0] >= a[0] for a, b in zip(progress, progress[1:]))


def test_refinement_on_workers_equals_refinement_here(parts, pool):
    videos = torch.rand(2, 17, 96, 144, 3, generator=torch.Generator().manual_seed(7))
    shared = VideoRequest(None, "a house", settings=SamplerSettings(steps=2))
    alone = refine_videos(parts, videos, shared, 0.5, False, QUIET)
    assert torch.equal(refine_videos(parts, videos, shared, 0.5, False, QUIET, workers=pool), alone)


def test_cancel_stops_every_worker_leaves_no_partial_file_and_the_next_run_resumes(parts, pool, requests, tmp_path):
    cache = VideoCache(tmp_path)
    stop_after_first = Hooks(should_stop=lambda: len(list(tmp_path.glob("*.pt"))) >= 1)
    with pytest.raises(Interrupted):
        generate_multiview(parts, requests, QUIET.with_hooks(stop_after_first), cache=cache, workers=pool)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no partial file
    first = [ray.get(worker.progress.remote()) for worker in pool.workers]
    time.sleep(1.5)
    assert [ray.get(worker.progress.remote()) for worker in pool.workers] == first  # nobody works on
    kept = len(cache.journal())
    announced = []
    generate_multiview(parts, requests, QUIET, cache=cache, workers=pool,
                       on_video=lambda index, count, cached: announced.append(index))
    assert len(announced) == kept >= 1  # the videos filed before the Cancel came from the cache
    keys = [entry["key"] for entry in cache.journal()]
    assert sorted(keys) == sorted(r.key(parts.identity) for r in requests)


def test_a_worker_killed_mid_run_costs_only_its_task(parts, pool, requests, tmp_path):
    cache = VideoCache(tmp_path)
    killed = []

    def kill_once(step, total, preview):
        if step > 0 and not killed:  # a worker has finished a step of its video: kill one mid-video
            killed.append(pool.workers[0])
            ray.kill(killed[0])

    grid = generate_multiview(parts, requests, QUIET.with_hooks(Hooks(progress=kill_once)), cache=cache,
                              workers=pool)
    assert killed and grid.shape == (3, 17, 96, 144, 3)
    keys = [entry["key"] for entry in cache.journal()]
    assert sorted(keys) == sorted(r.key(parts.identity) for r in requests)  # each video made exactly once
    assert torch.equal(grid, generate_multiview(parts, requests, QUIET))
