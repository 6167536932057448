"""One video across processes (dimx_core.distributed.parallel): CFG-parallel, Ulysses and both together, on gloo
processes, denoise exactly what one process denoises (float32, to 1e-5)."""
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dimx_core.directors import schedule
from dimx_core.directors.adapters import Director, DirectorControl, attach
from dimx_core.directors.formats import read_lora
from dimx_core.distributed.parallel import ParallelPlan, VideoShards, split_for
from dimx_core.tiny import TINY_TRANSFORMER, build_tiny_lora
from dimx_core.video.request import SamplerSettings
from dimx_core.video.runtime import WHOLE_STEPS
from dimx_core.video.sampling import denoise
from dimx_core.video.solvers import make_scheduler
from dimx_core.cogvideox.spec import COGVIDEOX_5B_I2V_SCHEDULER

# no learned positions, so the latents may be 10 x 18: 5 frames x 5 x 9 patches = 225 video tokens, which two ranks
# cannot split evenly (the padding path); RoPE still places every token
CONFIG = dict(TINY_TRANSFORMER, use_learned_positional_embeddings=False)
LATENTS = (1, 5, 16, 10, 18)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def denoised(lora_path, split=WHOLE_STEPS, seen=None):
    """Two guided DPM steps of a tiny transformer under an S-Director, from fixed inputs."""
    import diffusers

    torch.manual_seed(0)
    transformer = diffusers.CogVideoXTransformer3DModel(**CONFIG).eval().requires_grad_(False)
    refs = attach(transformer, [Director("orbit", "S", 1.0, read_lora(lora_path))], "tiny")
    generator = torch.Generator().manual_seed(1)
    latents, image_latents = (torch.randn(LATENTS, generator=generator) for _ in range(2))
    states = [torch.randn(1, 226, 32, generator=generator) for _ in range(2)]
    settings = SamplerSettings(steps=2, scheduler="dpm", cfg_schedule="timestep", seed=3)
    if seen is not None:
        transformer.transformer_blocks[0].register_forward_hook(
            lambda module, args, kwargs, out: seen.append(tuple(out[0].shape[:2])), with_kwargs=True)
    return denoise(transformer, make_scheduler("dpm", COGVIDEOX_5B_I2V_SCHEDULER), latents, image_latents, states,
                   settings, directors=DirectorControl(transformer, refs, schedule.constant(["orbit"], 2)),
                   generator=torch.Generator().manual_seed(3), split=split)


def _rank(rank, world, port, plan, lora_path, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        seen = []
        split = split_for(plan)
        latents = denoised(lora_path, split, seen)
        torch.save({"latents": latents, "block_tokens": seen,
                    "split_parts": (split.cfg_group is not None, split.sequence_group is not None)},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def director(tiny_model_dir, tmp_path_factory):
    return build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("lora") / "s.safetensors", "s")


@pytest.fixture(scope="module")
def alone(director):
    return denoised(director)


@pytest.mark.parametrize("plan", [ParallelPlan(cfg=2), ParallelPlan(ulysses=2), ParallelPlan(cfg=2, ulysses=2)],
                         ids=["cfg2", "ulysses2", "cfg2xulysses2"])
def test_a_split_video_denoises_what_one_process_denoises(plan, director, alone, tmp_path):
    mp.spawn(_rank, args=(plan.world, free_port(), plan, str(director), str(tmp_path)), nprocs=plan.world)
    for rank in range(plan.world):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["latents"].shape == alone.shape
        assert ((result["latents"] - alone).norm() / alone.norm()).item() <= 1e-5, (plan, rank)
        # each block saw this rank's run of the 225 video tokens (113: padded to 226), and only its guided row
        rows, tokens = (1 if plan.cfg == 2 else 2), (225 if plan.ulysses == 1 else 113)
        assert result["block_tokens"] == [(rows, tokens)] * 2
        # a part over one rank has no group: it takes the plain path instead of copying through an exchange
        assert result["split_parts"] == (plan.cfg > 1, plan.ulysses > 1)


def test_ulysses_refuses_heads_that_do_not_divide():
    with pytest.raises(ValueError, match="heads divisible by 3; this model has 2"):
        ParallelPlan(ulysses=3).check_heads(2)


def test_cfg_parallel_takes_one_or_two_ranks():
    with pytest.raises(ValueError, match="1 or 2 ranks, got 3"):
        ParallelPlan(cfg=3)
