"""What the Workers node and `--workers` accept, and the plain-data form in which requests travel to workers."""
import pickle

import pytest
import torch

from dimx_core.directors import schedule
from dimx_core.directors.adapters import DirectorRef
from dimx_core.distributed import wire
from dimx_core.distributed.executor import WorkersSpec
from dimx_core.distributed.parallel import ParallelPlan
from dimx_core.identity.latents import build_guide
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.workers import Task


def test_devices_text_becomes_gpu_ids_counts_or_cpu_workers():
    assert WorkersSpec.parse("0, 2,3").gpus == (0, 2, 3)
    assert WorkersSpec.parse("8", "ray://head:10001") == WorkersSpec(count=8, address="ray://head:10001")
    assert WorkersSpec.parse("cpu:2") == WorkersSpec(count=2, cpu=True)
    assert "GPUs 1, 3" in WorkersSpec.parse("1,3").describe()


@pytest.mark.parametrize("devices, address, message", [
    ("gpu0", "", "is not 'all', GPU ids"),
    ("0,0", "", "distinct numbers"),
    ("0,1", "auto", "give a count instead"),
    ("3", "", "do not form gangs"),
])
def test_bad_devices_are_refused_by_name(devices, address, message):
    plan = ParallelPlan(cfg=2) if message == "do not form gangs" else ParallelPlan()
    with pytest.raises(ValueError, match=message):
        WorkersSpec.parse(devices, address, plan=plan)


def test_a_request_travels_as_plain_data_and_comes_back_equal():
    reference = torch.rand(1, 5, 16, 12, 18, generator=torch.Generator().manual_seed(0))
    guide = build_guide(reference, 0.9, 0.5, 0, 3, seed=1)
    frames = torch.rand(4, 96, 144, 3)
    request = VideoRequest(frames[2], "a house", settings=SamplerSettings(steps=4, seed=9),
                           directors=(DirectorRef("orbit", "S", 1.0, "/x/s.safetensors", "abc"),),
                           schedule=schedule.constant(["orbit"], 4), start=guide.start, blend=guide.blend)
    sent = pickle.dumps(wire.encode(Task("k", "video", request, 4, "video 1 of 1")))
    task = wire.decode(pickle.loads(sent))
    assert task.payload.image.untyped_storage().nbytes() == frames[2].numel() * 4  # not the batch it was a view of
    assert task.payload.key("model") == request.key("model") and task.payload.directors == request.directors
    with pytest.raises(TypeError, match="cannot go to a worker"):
        wire.encode(object())
