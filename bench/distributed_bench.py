"""Scale-out costs and gains: the split step (CFG-parallel, Ulysses) and one Ray worker against the in-process path.

Two modes:
- `split` (no Ray): the guided CogVideoX-5b-I2V step (random weights, bf16, 49 frames at 480x720: 17,550 video +
  226 text tokens, batch 2) plain and through each split code path. At world size 1 every plan takes the plain
  path (split_for makes no group for a part over one rank), so the exchanges are forced through a 1-rank NCCL
  group: the local copies a rank makes around its communication; under torchrun on W GPUs every plan
  cfg x ulysses = W that the 48 heads allow is timed against the plain step on one GPU, i.e. the scaling. Every
  rank checks its result against the plain step (relative L2).
- `ray`: one whole video (--video-steps, default 50) made in this process and by one Ray worker holding the same
  model (loaded once, not timed): the worker's overhead (goal <= 3% of a 50-step video). On --model DIR, or a
  full-size folder with random weights it writes first (the text encoder cut to 2 layers), or --tiny.

    python bench/distributed_bench.py --mode split                     # one GPU, no Ray, about 60 s
    torchrun --nproc-per-node 8 bench/distributed_bench.py --mode split  # scaling over 8 GPUs
    python bench/distributed_bench.py --mode ray                      # needs ray; about 5 minutes
    python bench/distributed_bench.py --mode split --tiny ; python bench/distributed_bench.py --mode ray --tiny
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from video_bench import build_modules, rel_l2, synchronize  # noqa: E402

from dimx_core.cogvideox.spec import (COGVIDEOX_5B_I2V_SCHEDULER, COGVIDEOX_5B_I2V_TRANSFORMER,  # noqa: E402
                                      COGVIDEOX_5B_I2V_VAE, T5_XXL_ENCODER)
from dimx_core.distributed.parallel import ParallelPlan, ParallelSplit, split_for  # noqa: E402
from dimx_core.tiny import TINY_TRANSFORMER  # noqa: E402
from dimx_core.video.request import SamplerSettings  # noqa: E402
from dimx_core.video.runtime import WHOLE_STEPS  # noqa: E402
from dimx_core.video.sampling import denoise  # noqa: E402
from dimx_core.video.solvers import make_scheduler  # noqa: E402


def _init_group(device: torch.device) -> tuple[int, int]:
    """torchrun's group, or a 1-rank group of this process (NCCL on the GPU, gloo on the CPU)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    if "RANK" in os.environ:
        dist.init_process_group(backend)
    else:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    return dist.get_rank(), dist.get_world_size()


def _splits(world: int, heads: int) -> list[tuple[str, ParallelSplit]]:
    """Every cfg x ulysses = world the heads allow; at world size 1 the plan as split_for gives it, then each
    exchange and both forced through a 1-rank group."""
    if world == 1:
        one, plan = dist.new_group([0]), ParallelPlan()
        return [("plan 1 x 1 (split_for)", split_for(plan)), ("cfg exchange, 1 rank", ParallelSplit(plan, one, None)),
                ("ulysses exchange, 1 rank", ParallelSplit(plan, None, one)),
                ("cfg+ulysses exchanges, 1 rank", ParallelSplit(plan, one, one))]
    return [(f"cfg {cfg} x ulysses {world // cfg}", split_for(ParallelPlan(cfg, world // cfg))) for cfg in (1, 2)
            if world % cfg == 0 and heads % (world // cfg) == 0]


def split_mode(args, device: torch.device) -> dict:
    rank, world = _init_group(device)
    if device.type == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    dtype = torch.float32 if args.tiny else torch.bfloat16
    config = dict(TINY_TRANSFORMER) if args.tiny else dict(COGVIDEOX_5B_I2V_TRANSFORMER)
    started = time.perf_counter()
    transformer = build_modules(config, None, None, device, dtype)["transformer"]
    built = time.perf_counter() - started
    frames = 5 if args.tiny else 13
    height, width = (config["sample_height"], config["sample_width"])
    generator = torch.Generator().manual_seed(0)
    latents, image_latents = (torch.randn(1, frames, 16, height, width, generator=generator).to(device, dtype)
                              for _ in range(2))
    states = [torch.randn(1, 226, config["text_embed_dim"], generator=generator).to(device, dtype) for _ in range(2)]
    settings = SamplerSettings(steps=args.steps, scheduler="ddim", cfg_schedule="timestep")  # 5b-I2V's release

    def run(split) -> tuple[float, torch.Tensor]:
        scheduler = make_scheduler("ddim", COGVIDEOX_5B_I2V_SCHEDULER)
        denoise(transformer, scheduler, latents, image_latents, states, replace(settings, steps=1), split=split)
        synchronize(device)
        dist.barrier()
        start = time.perf_counter()
        out = denoise(transformer, scheduler, latents, image_latents, states, settings, split=split)
        synchronize(device)
        return (time.perf_counter() - start) / args.steps, out

    plain_seconds, plain = run(WHOLE_STEPS)
    rows = [{"variant": "plain step", "s_per_step": plain_seconds, "speedup": 1.0, "rel_l2": 0.0}]
    for name, split in _splits(world, config["num_attention_heads"]):
        seconds, out = run(split)
        rows.append({"variant": name, "s_per_step": seconds, "speedup": plain_seconds / seconds,
                     "rel_l2": rel_l2(out, plain)})
    dist.destroy_process_group()
    return {"mode": "split", "world": world, "rank": rank, "device": str(device), "build_s": built,
            "steps_timed": args.steps, "rows": rows}


# The text encoder runs once per video (~20 ms for T5-XXL's 24 layers): 2 of them keep the folder write and the two
# loads short without changing the timed video; the transformer and the VAE are full size.
RANDOM_T5_LAYERS = 2


def random_model_folder(out: Path, device: torch.device, dtype: torch.dtype) -> Path:
    """A CogVideoX-5b-I2V folder with random weights (built on `device`, saved in `dtype`)."""
    from dimx_core.tiny import new_model_folder, write_model_folder

    out, _ = new_model_folder(out)
    started = time.perf_counter()
    built = build_modules(COGVIDEOX_5B_I2V_TRANSFORMER, COGVIDEOX_5B_I2V_VAE,
                          dict(T5_XXL_ENCODER, num_layers=RANDOM_T5_LAYERS), device, dtype,
                          which=("transformer", "vae", "text_encoder"))
    write_model_folder(out, built["transformer"], built["vae"], built["text_encoder"],
                       readme=f"CogVideoX-5b-I2V with random weights (T5 cut to {RANDOM_T5_LAYERS} layers).\n")
    del built
    if device.type == "cuda":
        torch.cuda.empty_cache()
    print(f"random model folder written in {time.perf_counter() - started:.1f} s", flush=True)
    return out


def ray_mode(args, device: torch.device) -> dict:
    from dimx_core.distributed.executor import WorkerPool, WorkerSettings, WorkersSpec
    from dimx_core.tiny import build_tiny_model
    from dimx_core.video.components import ModelSource, dtype_name
    from dimx_core.video.request import VideoRequest
    from dimx_core.video.runtime import Runtime
    from dimx_core.video.sampling import generate
    from dimx_core.video.workers import Task

    dtype = torch.float32 if args.tiny else torch.bfloat16
    if args.model:
        folder = args.model
    elif args.tiny:
        folder = build_tiny_model(Path(tempfile.mkdtemp()) / "model")
    else:
        folder = random_model_folder(Path(tempfile.mkdtemp()) / "model", device, dtype)
    parts = ModelSource(dtype_name(dtype), folder=str(folder)).load()
    image = torch.rand(parts.spec.height, parts.spec.width, 3, generator=torch.Generator().manual_seed(0))
    request = VideoRequest(image, "a house on a hill", settings=SamplerSettings(steps=args.video_steps))
    runtime = Runtime.on_device(device, preview_every=0)
    generate(parts, VideoRequest(image, "warm-up", settings=SamplerSettings(steps=1)), runtime)
    start = time.perf_counter()
    here = generate(parts, request, runtime).frames
    in_process = time.perf_counter() - start
    for module in (parts.transformer, parts.vae, parts.text_encoder):
        module.to("cpu")  # the worker gets the GPU to itself
    if device.type == "cuda":
        torch.cuda.empty_cache()
    pool = WorkerPool(WorkersSpec(count=1, cpu=device.type != "cuda", settings=WorkerSettings(threads=args.threads)))
    made = {}
    warm = Task("warm-up", "video", VideoRequest(image, "warm-up", settings=SamplerSettings(steps=1)), 1, "warm-up")
    pool.run(parts, [warm], runtime, lambda task, frames, where: None)  # loads the model, warms the kernels
    start = time.perf_counter()
    pool.run(parts, [Task("video", "video", request, args.video_steps, "video")], runtime,
             lambda task, frames, where: made.update(frames=frames, where=where))
    on_worker = time.perf_counter() - start
    pool.close()
    return {"mode": "ray", "device": str(device), "video_steps": args.video_steps, "in_process_s": in_process,
            "worker_s": on_worker, "overhead_percent": 100 * (on_worker / in_process - 1),
            "worker": made["where"], "same_frames": bool(torch.equal(made["frames"], here))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("split", "ray"), default="split")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: checks the logic")
    parser.add_argument("--steps", type=int, default=2, help="timed guided steps per variant (split mode)")
    parser.add_argument("--video-steps", type=int, default=50, help="steps of the timed video (ray mode)")
    parser.add_argument("--model", type=Path, help="a CogVideoX-5b-I2V folder (ray mode; default: one with random "
                        "weights written to a temporary folder)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the worker (ray mode)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "bench"), help="results folder")
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA GPU: run on the GPU machine, or use --tiny to check the logic on the CPU")
    device = torch.device("cpu" if args.tiny else "cuda")
    result = (split_mode if args.mode == "split" else ray_mode)(args, device)
    text = json.dumps(result, indent=2)
    print(text)
    if result.get("rank", 0) == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"results-distributed-{args.mode}{'-tiny' if args.tiny else ''}.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
