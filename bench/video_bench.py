"""One guided CogVideoX-5b-I2V denoising step, timed every way the pack can run it, in one process.

Builds the full-size transformer (and, for the whole-run part, the full-size VAE and T5-XXL encoder) with random
weights in bf16 on the GPU, and synthetic inputs of a 49-frame 480x720 video with guidance on (batch 2:
17,550 video + 226 text tokens). Times diffusers' own transformer call and pipeline loop, the pack's loop, and
every speed option of issue 7; reports s/step, the 50-step total, achieved TFLOP/s, peak GPU memory and the
error of one step's output against diffusers' bf16 eager call. One variant failing (out of memory, a kernel that
does not run, a time limit) is recorded and the rest go on; results are rewritten after every variant.

    PYTHONUNBUFFERED=1 python3 bench/video_bench.py            # on the GPU; ~8 minutes; --quick for ~5
    python bench/video_bench.py --tiny --out /tmp/bench        # the same logic on the CPU with the tiny models

Random weights time exactly like trained ones, but errors (fp8, step caching, tiles) are only indicative, and how
many steps the step cache skips depends on the trained model: see bench/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# noqa: E402 below: the repository root goes on the path first
from dimx_core.cogvideox.spec import (COGVIDEOX_5B_I2V_SCHEDULER, COGVIDEOX_5B_I2V_TRANSFORMER,  # noqa: E402
                                      COGVIDEOX_5B_I2V_VAE, T5_XXL_ENCODER, spec_from_configs)
from dimx_core.directors import schedule  # noqa: E402
from dimx_core.directors.adapters import Director, DirectorControl, attach, lora_layers  # noqa: E402
from dimx_core.directors.formats import read_lora  # noqa: E402
from dimx_core.directors.merged import MergedDirectors  # noqa: E402
from dimx_core.hooks import Hooks  # noqa: E402
from dimx_core.speed.attention import OPTIONAL_KERNELS, installed, sdpa  # noqa: E402
from dimx_core.speed.compile import set_compiled  # noqa: E402
from dimx_core.speed.fp8 import fp8_linear, fp8_linear_reference, quantize_rowwise  # noqa: E402
from dimx_core.speed.options import SpeedOptions  # noqa: E402
from dimx_core.speed.session import attention_shape, speed_applied  # noqa: E402
from dimx_core.tiny import TINY_T5, TINY_TRANSFORMER, TINY_VAE, director_lora_tensors  # noqa: E402
from dimx_core.video.components import VideoComponents  # noqa: E402
from dimx_core.video.request import SamplerSettings, VideoRequest  # noqa: E402
from dimx_core.video.runtime import Runtime  # noqa: E402
from dimx_core.video.sampling import denoise, generate, rotary_embeddings  # noqa: E402
from dimx_core.video.solvers import make_scheduler  # noqa: E402

GB = 1e9
BUDGET_24GB = 22 * GB
FLOOR_TFLOPS = 790.0  # the H200's bf16 matrix rate measured here (KINDS.md); the bench measures its own too
DIRECTOR_RANK = 256


# --- timing ---------------------------------------------------------------------------------------------------------

class Clock:
    """Marks on the device's timeline (CUDA events; host time on the CPU): no waiting while marking."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self, *_ignored) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def intervals(self) -> list[float]:
        """Seconds between consecutive marks (waits for the last one)."""
        if self.cuda:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.marks, self.marks[1:])]
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def timed_calls(fn, device, repeats: int, warmup: int = 1):
    """(median seconds, every time, last output) of `fn()` after `warmup` calls."""
    out = None
    for _ in range(warmup):
        out = fn()
    clock = Clock(device)
    clock.mark()
    for _ in range(repeats):
        out = fn()
        clock.mark()
    times = clock.intervals()
    return statistics.median(times), times, out


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm()).item()


def loop_settings(steps: int) -> SamplerSettings:
    """The settings of the loop variants, which build their DDIM scheduler themselves (5b-I2V's release)."""
    return SamplerSettings(steps=steps, scheduler="ddim", cfg_schedule="timestep")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":  # the allocator's own bookkeeping: no need to wait for the GPU
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GB if device.type == "cuda" else None


def cap_memory(device: torch.device, limit: float | None) -> None:
    """Free what is unreferenced, then cap PyTorch's allocator at `limit` bytes (None: the whole GPU)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total) if limit else 1.0, device)


@dataclass
class WholeRun:
    """One image->video run of a few steps; its 50-step time is extrapolated as fixed costs + 50 x step."""
    result: object                     # the VideoResult
    steps: int
    total_s: float
    per_step_s: float
    first_step_s: float                # to the end of step 1: T5, image encode, step 1
    decode_s: float                    # from the end of the last step: the VAE decode
    peaks_gb: list[float]              # up to step 1 / in the loop / decoding (CUDA only)

    @property
    def fixed_s(self) -> float:
        return self.total_s - self.steps * self.per_step_s

    @property
    def total_50(self) -> float:
        return self.fixed_s + 50 * self.per_step_s

    def notes(self) -> list[str]:
        notes = [f"{self.steps} steps in {self.total_s:.1f} s; fixed costs {self.fixed_s:.1f} s (T5, VAE encode and "
                 f"decode, transfers); to the end of step 1 {self.first_step_s:.1f} s, decode {self.decode_s:.1f} s"]
        if self.peaks_gb:
            notes.append("peak GB up to step 1 / in the loop / decoding: "
                         + " / ".join(f"{p:.1f}" for p in self.peaks_gb))
        return notes


def whole_run(parts: VideoComponents, image: torch.Tensor, speed: SpeedOptions, device: torch.device,
              steps: int = 3) -> WholeRun:
    """The pack's whole image->video run (generate) with `steps` steps, the model's own sampler ("auto"), timed on
    the device's timeline, with the allocator's peak up to step 1, in the loop and while decoding."""
    clock, peaks = Clock(device), []

    def progress(step, total, preview):
        clock.mark()
        if step in (1, total):  # peak up to the first step (T5, VAE encode, step 1), then of the loop
            peaks.append(peak_gb(device))
            reset_peak(device)

    reset_peak(device)
    synchronize(device)
    started = time.perf_counter()
    clock.mark()
    request = VideoRequest(image, "a cat walks on the moon", settings=SamplerSettings(steps=steps),
                           lossy=speed.lossy())
    result = generate(parts, request, Runtime.on_device(device, hooks=Hooks(progress=progress), speed=speed,
                                                        preview_every=0))
    clock.mark()
    total = time.perf_counter() - started
    intervals = clock.intervals()
    return WholeRun(result, steps, total, statistics.median(intervals[1:steps]), intervals[0], intervals[-1],
                    [p for p in peaks + [peak_gb(device)] if p is not None])


def low_memory_whole_run(parts: VideoComponents, image: torch.Tensor, device: torch.device,
                         steps: int = 3) -> tuple[WholeRun, str]:
    """The whole run in the 24 GB mode with PyTorch's allocator capped at 22 GB (a 24 GB card, as far as the
    allocator can tell); out of memory under the cap, once more uncapped to show its peak. T5 starts on the host,
    where a run in this mode leaves it. Returns the run and what happened."""
    parts.text_encoder.to("cpu")
    try:
        cap_memory(device, BUDGET_24GB)
        return whole_run(parts, image, SpeedOptions(low_memory=True), device, steps), \
            "ran with PyTorch's allocator capped at 22 GB"
    except torch.OutOfMemoryError:
        traceback.print_exc()
        cap_memory(device, None)
        parts.text_encoder.to("cpu")
        return whole_run(parts, image, SpeedOptions(low_memory=True), device, steps), \
            "OVER the 22 GB cap: ran out of memory under it, so ran again uncapped to show its peak"
    finally:
        cap_memory(device, None)


# --- what is built ---------------------------------------------------------------------------------------------------

def build_modules(config_transformer, config_vae, config_t5, device, dtype, which=("transformer",)):
    """Random-weight modules built directly on `device` in `dtype` (no CPU init of billions of weights)."""
    import diffusers
    import transformers

    built = {}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            if "transformer" in which:
                built["transformer"] = diffusers.CogVideoXTransformer3DModel(**config_transformer)
            if "vae" in which:
                built["vae"] = diffusers.AutoencoderKLCogVideoX(**config_vae)
            if "text_encoder" in which:
                built["text_encoder"] = transformers.T5EncoderModel(transformers.T5Config(**config_t5))
    finally:
        torch.set_default_dtype(previous)
    for module in built.values():
        module.eval().requires_grad_(False)
    return built


class WordTokenizer:
    """Stands in for the T5 tokenizer (none can be downloaded): one id per word from a hash, then </s>, then pad."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def __call__(self, texts, padding="longest", max_length=None, truncation=False, add_special_tokens=True,
                 return_tensors="pt"):
        rows = [[2 + zlib.crc32(word.encode()) % (self.vocab_size - 2) for word in text.split()] + [1]
                for text in texts]
        if truncation and max_length:
            rows = [row[:max_length] for row in rows]
        length = max_length if padding == "max_length" else max(len(row) for row in rows)
        return SimpleNamespace(input_ids=torch.tensor([row + [0] * (length - len(row)) for row in rows]))

    def decode(self, ids, skip_special_tokens=True) -> str:
        return " ".join(f"<{int(i)}>" for i in ids)


def guided_step_flops(config, tokens: int, batch: int, video_tokens: int) -> float:
    """Multiply-adds x 2 of one guided transformer call: per block q/k/v/out (8 N D^2), the feed-forward
    (16 N D^2, inner 4D), attention scores and values (4 N^2 D); plus patch embedding and the output projection."""
    dim = config.num_attention_heads * config.attention_head_dim
    per_block = 24 * tokens * dim * dim + 4 * tokens * tokens * dim
    patch = config.patch_size ** 2 * (config.patch_size_t or 1)
    edges = 2 * video_tokens * dim * patch * (config.in_channels + config.out_channels)
    return float(batch * (config.num_layers * per_block + edges))


# --- results ---------------------------------------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    kind: str                          # "call": one transformer call; "loop": a step of the loop; "run": image->video
    seconds: float | None = None       # per guided step
    total_50: float | None = None      # a 50-step video
    tflops: float | None = None
    peak_gb: float | None = None
    error: float | None = None         # relative L2 against `reference`
    reference: str = ""
    notes: list[str] = field(default_factory=list)
    status: str = "ok"


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = torch.device("cpu" if args.tiny else args.device)
        if self.device.type == "cuda" and self.device.index is None:  # the allocator calls need an index
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.dtype = torch.bfloat16
        self.repeats = 2 if args.quick else 3
        self.started = time.perf_counter()
        self.deadline = self.started + args.budget
        self.rows: list[Row] = []
        self.facts: dict = {}
        self.out_dirs = [Path(args.out)] + ([] if args.tiny else [ROOT / "bench"])
        self.only = set(args.only.split(",")) if args.only else None
        self.ref_output = None
        self.backend = "aot_eager" if args.tiny else "inductor"

    # --- the plan: (name, estimated seconds on an H100, time limit) in order of importance ---------------------------

    def plan(self):
        full = not self.args.quick
        return [
            ("reference", self.reference, 25, 120),
            ("pack_loop", self.pack_loops, 20, 120),
            ("attention", self.attention_kernels, 25, 120),
            ("fused_qkv", self.fused_qkv, 8, 60),
            ("fp8", self.fp8_eager, 10, 90),
            ("compile", self.compiled, 100, 300),
            # right after the first compile: the same graphs, so the on-disk cache is what is measured
            *([("compile_cached", self.compile_from_cache, 40, 150)] if full else []),
            ("directors", self.directors, 55, 200),
            ("low_memory", self.low_memory, 60, 240),
            ("fp8_compile", self.fp8_compiled, 100, 300),
            ("pipeline", self.pipeline_and_syncs, 30, 150),
            ("step_cache", self.step_cache, 25, 120),
        ]

    # --- running ---------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        args, device = self.args, self.device
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            self.facts["gpu"] = torch.cuda.get_device_name(device)
            self.facts["gpu_memory_gb"] = round(total / GB, 1)
            self.facts["free_at_start_gb"] = round(free / GB, 1)
            if free < 40 * GB:
                print(f"warning: only {free / GB:.0f} GB free; the 24 GB-mode run needs ~40 GB for its unconstrained "
                      "reference and may be skipped")
        config = TINY_TRANSFORMER if args.tiny else COGVIDEOX_5B_I2V_TRANSFORMER
        self.configs = (config, TINY_VAE if args.tiny else COGVIDEOX_5B_I2V_VAE,
                        dict(TINY_T5, vocab_size=420) if args.tiny else T5_XXL_ENCODER)
        started = time.perf_counter()
        self.transformer = build_modules(*self.configs, device, self.dtype)["transformer"]
        synchronize(device)
        self.facts["build_transformer_s"] = round(time.perf_counter() - started, 1)
        cfg = self.transformer.config
        self.spec = spec_from_configs(dict(cfg), self.configs[1])
        frames = self.spec.latent_frames
        h, w = self.spec.height // self.spec.spatial_factor, self.spec.width // self.spec.spatial_factor
        g = torch.Generator(device=device).manual_seed(0)
        self.latents = torch.randn(1, frames, 16, h, w, generator=g, device=device, dtype=self.dtype)
        self.image_latents = torch.zeros_like(self.latents)
        self.image_latents[:, 0] = torch.randn(1, 16, h, w, generator=g, device=device, dtype=self.dtype) * 0.7
        text = (1, self.spec.text_tokens, cfg.text_embed_dim)
        self.states = [torch.randn(text, generator=g, device=device, dtype=self.dtype) * 0.2 for _ in range(2)]
        self.model_input = torch.cat([torch.cat([self.latents] * 2), torch.cat([self.image_latents] * 2)], dim=2)
        self.text = torch.cat(self.states)
        self.timestep = torch.full((2,), 500, device=device, dtype=torch.long)
        self.rotary = rotary_embeddings(cfg, self.latents.shape, device)
        self.shape = attention_shape(cfg, self.model_input.shape, self.spec.text_tokens)
        video_tokens = self.shape[2] - self.spec.text_tokens
        self.flops = guided_step_flops(cfg, self.shape[2], 2, video_tokens)
        self.facts.update(tokens=self.shape[2], video_tokens=video_tokens, flops_per_guided_step=self.flops)
        self.facts["matmul_tflops_bf16"] = self._matmul_rate()
        floor = self.flops / (self.facts["matmul_tflops_bf16"] or FLOOR_TFLOPS) / 1e12
        self.facts["compute_floor_s"] = round(floor, 3)
        print(f"setup: {self.facts}")

    def _matmul_rate(self) -> float | None:
        if self.device.type != "cuda":
            return None
        a = torch.randn(8192, 8192, device=self.device, dtype=self.dtype)
        b = torch.randn(8192, 8192, device=self.device, dtype=self.dtype)
        seconds = timed_calls(lambda: a @ b, self.device, repeats=10, warmup=3)[0]
        return round(2 * 8192 ** 3 / seconds / 1e12, 1)

    def run(self) -> None:
        self.setup()
        for name, step, estimate, limit in self.plan():
            if self.only and name not in self.only:
                continue
            left = self.deadline - time.perf_counter()
            if left < estimate and not self.args.tiny:
                self.rows.append(Row(name, "-", status=f"skipped: {left:.0f} s of the budget left, needs ~{estimate}"))
                self.write()
                continue
            self._run_one(name, step, min(limit, max(int(left), 1)))
            self.write()
        self.write(final=True)

    def _run_one(self, name, step, limit) -> None:
        print(f"\n== {name} (limit {limit} s, {time.perf_counter() - self.started:.0f} s elapsed)")
        with _time_limit(limit if not self.args.tiny else 0):
            try:
                step()
            except Exception as err:  # noqa: BLE001  (one variant failing must not lose the others)
                kind = "out of memory" if isinstance(err, torch.OutOfMemoryError) else type(err).__name__
                message = str(err).splitlines()[0][:300] if str(err) else ""
                self.rows.append(Row(name, "-", status=f"failed: {kind}: {message}"))
                traceback.print_exc()
                if self.args.tiny and not isinstance(err, (torch.OutOfMemoryError, _Timeout)):
                    raise
        cap_memory(self.device, None)

    def add(self, row: Row) -> Row:
        if row.seconds is not None:
            row.total_50 = row.total_50 if row.total_50 is not None else 50 * row.seconds
            if row.kind in ("call", "loop"):
                row.tflops = round(self.flops / row.seconds / 1e12, 1)
        self.rows.append(row)
        print(self._line(row))
        return row

    # --- measuring helpers ------------------------------------------------------------------------------------------

    def _peak_start(self) -> None:
        reset_peak(self.device)

    def _peak(self) -> float | None:
        return peak_gb(self.device)

    def _call(self):
        return self.transformer(hidden_states=self.model_input, encoder_hidden_states=self.text,
                                timestep=self.timestep, image_rotary_emb=self.rotary, return_dict=False)[0]

    def call_variant(self, name, speed: SpeedOptions | None, control=None, step=0, reference=None,
                     reference_name="diffusers eager bf16") -> tuple[Row, torch.Tensor]:
        """One guided transformer call under `speed` (None: diffusers' own processors): its row and output."""
        notes: list[str] = []
        self._peak_start()
        with torch.no_grad(), (speed_applied(self.transformer, speed, control, self.shape, notes, self.backend)
                               if speed is not None else contextlib.nullcontext(control)) as directors:
            if directors is not None:
                directors.apply(step)
            seconds, times, out = timed_calls(self._call, self.device, self.repeats)
        reference = self.ref_output if reference is None else reference
        error = rel_l2(out, reference) if reference is not None else None
        row = Row(name, "call", seconds, peak_gb=self._peak(), error=error,
                  reference=reference_name if error is not None else "",
                  notes=notes + [f"times {', '.join(f'{t:.3f}' for t in times)}"])
        return self.add(row), out

    def loop_variant(self, name, speed: SpeedOptions, steps: int, control=None, reference=None,
                     reference_name="pack loop, no options"):
        """`steps` steps of the pack's loop; s/step = median of the steps after the first (which includes setup)."""
        notes: list[str] = []
        clock = Clock(self.device)
        self._peak_start()
        clock.mark()
        out = denoise(self.transformer, make_scheduler("ddim", COGVIDEOX_5B_I2V_SCHEDULER), self.latents.clone(),
                      self.image_latents, self.states, loop_settings(steps), directors=control, speed=speed,
                      hooks=Hooks(progress=clock.mark), notes=notes, compile_backend=self.backend)
        steps_s = clock.intervals()
        error = rel_l2(out, reference) if reference is not None else None
        row = Row(name, "loop", statistics.median(steps_s[1:]), peak_gb=self._peak(), error=error,
                  reference=reference_name if reference is not None else "",
                  notes=notes + [f"steps {', '.join(f'{t:.3f}' for t in steps_s)} (first: with setup)"])
        self.add(row)
        return row, out, steps_s

    # --- the variants -----------------------------------------------------------------------------------------------

    def reference(self) -> None:
        row, self.ref_output = self.call_variant("diffusers eager (CogVideoXAttnProcessor2_0, default SDPA)", None)
        row.error, row.reference = 0.0, "itself"
        off, _ = self.call_variant("pack processor, no options", SpeedOptions.off())
        off.notes.append("must equal diffusers bit for bit (error 0)")
        self.call_variant("pack defaults (auto attention + fused QKV)", SpeedOptions())

    def pack_loops(self) -> None:
        steps = 1 + self.repeats
        _, self.off_latents, _ = self.loop_variant("pack loop, no options", SpeedOptions.off(), steps)
        self.loop_variant("pack loop, defaults", SpeedOptions(), steps, reference=self.off_latents)

    def attention_kernels(self) -> None:
        names = ["cudnn", "flash", "efficient"] + [n for n in OPTIONAL_KERNELS if installed(n)]
        for name in names:
            try:
                self.call_variant(f"attention {name} (unfused QKV)", SpeedOptions(attention=name, fuse_qkv=False))
            except ValueError as err:  # the pack's own "cannot run here" explanation
                self.add(Row(f"attention {name}", "call", status=f"not available: {err}"))
        missing = [f"{n}: {OPTIONAL_KERNELS[n].what}" for n in OPTIONAL_KERNELS if not installed(n)]
        if missing:
            self.facts["optional_kernels_not_installed"] = missing
        if self.device.type == "cuda":
            q = torch.randn(self.shape, device=self.device, dtype=self.dtype)
            seconds = timed_calls(lambda: sdpa(q, q, q), self.device, self.repeats)[0]
            attention_flops = 4 * self.shape[0] * self.shape[1] * self.shape[2] ** 2 * self.shape[3]
            self.facts["attention_call_sdpa_default_ms"] = round(seconds * 1000, 2)
            self.facts["attention_tflops_sdpa_default"] = round(attention_flops / seconds / 1e12, 1)

    def fused_qkv(self) -> None:
        self.call_variant("fused QKV (SDPA default)", SpeedOptions(attention="sdpa"))

    def fp8_eager(self) -> None:
        self.call_variant("fp8 linears (eager, auto attention, fused QKV)", SpeedOptions(fp8=True))
        layer = self.transformer.transformer_blocks[0].attn1.to_out[0]
        x = torch.randn(self.shape[0] * self.shape[2], layer.in_features, device=self.device, dtype=self.dtype)
        values, scale = quantize_rowwise(layer.weight)
        fast = fp8_linear(x, values, scale.reshape(1, -1), layer.bias)
        reference = fp8_linear_reference(x, values, scale.reshape(1, -1), layer.bias)
        self.facts["fp8_kernel_vs_dequantised_reference"] = rel_l2(fast, reference)
        self.facts["fp8_vs_bf16_one_layer"] = rel_l2(fast, torch.nn.functional.linear(x, layer.weight, layer.bias))

    def _compile_variant(self, name, speed) -> None:
        """Compile time (the first call, on the host) and the compiled call; if the measured-best attention kernel
        does not compile, once more with flash attention."""
        try:
            self._compiled_call(name, speed)
        except Exception as err:  # noqa: BLE001
            if speed.attention != "auto" or isinstance(err, (torch.OutOfMemoryError, _Timeout)):
                raise
            traceback.print_exc()
            torch._dynamo.reset()
            self._compiled_call(f"{name} (flash attention: auto's kernel did not compile)",
                                SpeedOptions(**{**asdict(speed), "attention": "flash"}))

    def _compiled_call(self, name, speed) -> None:
        notes: list[str] = []
        self._peak_start()
        started = time.perf_counter()
        with torch.no_grad(), speed_applied(self.transformer, speed, None, self.shape, notes, self.backend):
            self._call()
            synchronize(self.device)
            compile_s = time.perf_counter() - started
            seconds, times, out = timed_calls(self._call, self.device, self.repeats)
        self.add(Row(name, "call", seconds, peak_gb=self._peak(), error=rel_l2(out, self.ref_output),
                     reference="diffusers eager bf16",
                     notes=notes + [f"first call (compile) {compile_s:.1f} s", f"times {times}"]))

    def compiled(self) -> None:
        self._compile_variant("compiled blocks + defaults", SpeedOptions(compile=True))

    def compile_from_cache(self) -> None:
        """The same compile again after dynamo forgets it: what a new session pays with the on-disk cache warm."""
        torch._dynamo.reset()
        self._compile_variant("compiled blocks, from the warm cache", SpeedOptions(compile=True))

    def fp8_compiled(self) -> None:
        self._compile_variant("fp8 + compiled blocks + defaults", SpeedOptions(compile=True, fp8=True))

    def directors(self) -> None:
        """Rank-256 directors in the release key layout (random weights, written and read back as files)."""
        from safetensors.torch import save_file

        cfg = dict(self.transformer.config)
        folder = Path(tempfile.mkdtemp(prefix="dimx_bench_loras_"))
        rank = 8 if self.args.tiny else DIRECTOR_RANK
        chain = []
        for name, role, kind in (("orbit_left", "S", "s"), ("motion", "T", "t")):
            path = folder / f"{name}.safetensors"
            save_file(director_lora_tensors(cfg, kind, seed=1, rank=rank), str(path))
            chain.append(Director(name, role, 1.0, read_lora(path)))
        attach(self.transformer, chain, "CogVideoX-5b-I2V (random weights)")
        one = DirectorControl(self.transformer, chain[:1], schedule.constant(["orbit_left"], 50))
        peft, peft_out = self.call_variant("1 director, PEFT adapter, diffusers arithmetic", SpeedOptions.off(), one)
        if peft.error is not None:  # not an error: what the director changes
            peft.notes.append(f"the director changes the output by {peft.error:.1e} (relative L2)")
            peft.error, peft.reference = None, ""
        plain = self._seconds_of("diffusers eager")
        if plain:
            peft.notes.append(f"x{peft.seconds / plain:.3f} of diffusers eager without a director")
        for name, speed in (("1 director, PEFT adapter + pack defaults", SpeedOptions(merge_directors=False)),
                            ("1 director merged + pack defaults", SpeedOptions())):
            self.call_variant(name, speed, one, reference=peft_out, reference_name="1 director, PEFT adapter")
        switch = DirectorControl(self.transformer, chain, schedule.switch_once("orbit_left", "motion", 2, 4))
        self._switch_costs(switch)
        reference = None
        for name, speed in (("Switch-Once, PEFT adapters", SpeedOptions(merge_directors=False)),
                            ("Switch-Once, merged", SpeedOptions())):
            row, out, steps_s = self.loop_variant(name, speed, 4, switch, reference=reference,
                                                  reference_name="Switch-Once, PEFT adapters")
            reference = out if reference is None else reference
            row.notes.append(f"S step {steps_s[1]:.3f} s; the switch step {steps_s[2]:.3f} s; T steps "
                             f"{statistics.median(steps_s[3:]):.3f} s")
        for layer in lora_layers(self.transformer):  # later variants measure the plain model again
            for adapter in list(layer.lora_A):
                layer.delete_adapter(adapter)

    def _seconds_of(self, prefix: str) -> float | None:
        return next((r.seconds for r in self.rows if r.name.startswith(prefix) and r.seconds), None)

    def _switch_costs(self, switch: DirectorControl) -> None:
        """Wall time of one switch, S -> T and back (host and GPU: adapter switches are host work only)."""
        def wall(fn, repeats=self.repeats) -> float:
            times = []
            for _ in range(repeats):
                synchronize(self.device)
                started = time.perf_counter()
                fn()
                synchronize(self.device)
                times.append(time.perf_counter() - started)
            return statistics.median(times)

        with torch.no_grad():
            switch.apply(0)
            self.facts["switch_ms_adapters"] = round(wall(lambda: (switch.apply(2), switch.apply(0))) * 500, 2)
            switch.release()
            merged = MergedDirectors(switch)
            self.facts["merge_prepare_s"] = round(wall(merged.__enter__, 1), 3)  # host copy of the base weights
            merged.apply(0)
            self.facts["switch_ms_merged"] = round(wall(lambda: (merged.apply(2), merged.apply(0))) * 500, 2)
            self.facts["merge_restore_s"] = round(wall(merged.release, 1), 3)  # exact, from the host copy
            self.facts["merged_layers"] = len(merged.layers)
        print({k: v for k, v in self.facts.items() if "switch" in k or "merge" in k})

    def low_memory(self) -> None:
        """The whole image->video run at 3 steps, unconstrained and in the 24 GB mode; 50 steps extrapolated."""
        built = build_modules(*self.configs, self.device, self.dtype, which=("vae", "text_encoder"))
        parts = VideoComponents(self.transformer, built["vae"], built["text_encoder"],
                                WordTokenizer(self.configs[2]["vocab_size"]), COGVIDEOX_5B_I2V_SCHEDULER, self.spec,
                                "random weights")
        image = torch.rand(self.spec.height, self.spec.width, 3, generator=torch.Generator().manual_seed(0))
        normal = whole_run(parts, image, SpeedOptions(), self.device)
        normal_row = self._run_row("whole run, unconstrained", normal, "T5 resident, VAE untiled")
        low, what = low_memory_whole_run(parts, image, self.device)
        capped = "OVER" not in what
        row = self._run_row("whole run, 24 GB mode" + ("" if capped else " (over the 22 GB cap)"), low, what)
        row.error, row.reference = rel_l2(low.result.frames, normal.result.frames), "unconstrained frames (tiles vs whole)"
        row.notes.append(f"latents identical: {torch.equal(low.result.latents, normal.result.latents)}")
        row.notes.append(f"50-step time vs unconstrained: x{row.total_50 / normal_row.total_50:.3f}")

    def _run_row(self, name: str, run: WholeRun, note: str) -> Row:
        return self.add(Row(name, "run", run.per_step_s, total_50=run.total_50, peak_gb=max(run.peaks_gb, default=None),
                            notes=run.notes() + [note]))

    def pipeline_and_syncs(self) -> None:
        diffusers = __import__("diffusers")
        set_compiled(self.transformer, False)  # diffusers' pipeline runs the plain blocks
        vae = build_modules(*self.configs, self.device, self.dtype, which=("vae",))["vae"]
        pipe = diffusers.CogVideoXImageToVideoPipeline(
            tokenizer=None, text_encoder=None, vae=vae, transformer=self.transformer,
            scheduler=make_scheduler("ddim", COGVIDEOX_5B_I2V_SCHEDULER))
        pipe.set_progress_bar_config(disable=True)
        image = torch.rand(1, 3, self.spec.height, self.spec.width)

        def run(steps, clock=None):
            def on_step(pipeline, i, t, kwargs):
                if clock is not None:
                    clock.mark()
                return {}

            with torch.no_grad():
                return pipe(image=image, prompt_embeds=self.states[1], negative_prompt_embeds=self.states[0],
                            height=self.spec.height, width=self.spec.width, num_frames=self.spec.frames,
                            num_inference_steps=steps, guidance_scale=6.0, use_dynamic_cfg=True,
                            latents=self.latents.clone(), output_type="latent", callback_on_step_end=on_step)

        run(1)
        clock = Clock(self.device)
        self._peak_start()
        run(1 + self.repeats, clock)
        times = clock.intervals()
        self.add(Row("diffusers CogVideoXImageToVideoPipeline loop", "loop", statistics.median(times),
                     peak_gb=self._peak(), notes=[f"steps {times}"]))
        if self.device.type == "cuda":
            pack = _syncs(lambda s: denoise(self.transformer, make_scheduler("ddim", COGVIDEOX_5B_I2V_SCHEDULER),
                                            self.latents.clone(), self.image_latents, self.states,
                                            loop_settings(s), speed=SpeedOptions()))
            self.facts["host_syncs_per_step_pack_loop"] = pack
            self.facts["host_syncs_per_step_diffusers_pipeline"] = _syncs(run)

    def step_cache(self) -> None:
        steps = 8
        threshold = self.args.step_cache
        plain, plain_latents, plain_steps = self.loop_variant(f"loop, no step cache ({steps} steps)", SpeedOptions(),
                                                              steps)
        cached, _, cached_steps = self.loop_variant(
            f"loop, step cache {threshold:g} ({steps} steps)", SpeedOptions(step_cache=threshold), steps,
            reference=plain_latents, reference_name=f"final latents without the cache ({steps} steps)")
        ratio = sum(cached_steps[1:]) / sum(plain_steps[1:])
        reused = sum(t < 0.5 * plain.seconds for t in cached_steps[1:])
        cached.notes.append(f"steps 2-{steps}: x{ratio:.3f} of the uncached time; {reused} of {steps - 1} steps "
                            "reused the cache (random weights: a trained model's count will differ)")
        cached.seconds = sum(cached_steps[1:]) / (steps - 1)
        cached.total_50 = 50 * cached.seconds

    # --- output -----------------------------------------------------------------------------------------------------

    def _line(self, row: Row) -> str:
        def number(value, fmt):
            return format(value, fmt) if value is not None else "-"

        return (f"{row.name[:58]:58s} {row.kind:5s} {number(row.seconds, '8.3f')} {number(row.total_50, '8.1f')} "
                f"{number(row.tflops, '7.1f')} {number(row.peak_gb, '7.2f')} {number(row.error, '10.2e')}  "
                f"{row.status if row.status != 'ok' else ''}")

    def summary(self) -> list[str]:
        """The issue's goals, each against the measured numbers (absent where a variant did not run)."""
        rows = {row.name: row for row in self.rows if row.seconds}

        def find(prefix):
            return next((row for name, row in rows.items() if name.startswith(prefix)), None)

        lines = []
        eager, off = find("diffusers eager"), find("pack processor, no options")
        if off:
            lines.append(f"pack processor without options equals diffusers bit for bit: {off.error == 0}")
        pipeline, pack_loop = find("diffusers CogVideoXImageToVideoPipeline"), find("pack loop, no options")
        if pipeline and pack_loop:
            lines.append(f"pack loop (no options) vs diffusers' pipeline loop: {pack_loop.seconds:.3f} vs "
                         f"{pipeline.seconds:.3f} s/step (x{pack_loop.seconds / pipeline.seconds:.3f})")
        calls = [row for row in rows.values() if row.kind == "call"]
        bf16 = [row for row in calls if not any(word in row.name for word in ("fp8", "director", "diffusers"))]
        fp8 = [row for row in calls if "fp8" in row.name]
        if eager and bf16:
            best = min(bf16, key=lambda row: row.seconds)
            lines.append(f"goal 1, bf16 <= 1.0 s/step and >= 1.75x diffusers eager ({eager.seconds:.3f} s): best is "
                         f"'{best.name}' {best.seconds:.3f} s, x{eager.seconds / best.seconds:.2f}, error "
                         f"{_fmt(best.error, '.1e')}; floor {self.facts.get('compute_floor_s')} s")
        merged, defaults, peft = (find("1 director merged"), find("pack defaults"),
                                  find("1 director, PEFT adapter, diffusers"))
        if merged and defaults:
            lines.append(f"goal 2, merged director costs a plain step: {merged.seconds:.3f} vs {defaults.seconds:.3f} "
                         f"s (x{merged.seconds / defaults.seconds:.3f}); a switch {self.facts.get('switch_ms_merged')} "
                         f"ms merged, {self.facts.get('switch_ms_adapters')} ms as adapters")
        if peft and eager:
            lines.append(f"an unfused rank-{DIRECTOR_RANK} PEFT director costs x{peft.seconds / eager.seconds:.3f} of "
                         "a plain diffusers step")
        if fp8 and eager:
            best = min(fp8, key=lambda row: row.seconds)
            lines.append(f"goal 3, fp8 <= 0.65 s/step: best is '{best.name}' {best.seconds:.3f} s, error vs bf16 "
                         f"eager {_fmt(best.error, '.1e')}")
        low, normal = find("whole run, 24 GB mode"), find("whole run, unconstrained")
        if low and normal:
            lines.append(f"goal 4, 24 GB mode peak <= 22 GB at <= 1.3x: peak {_fmt(low.peak_gb, '.1f')} GB "
                         f"(unconstrained {_fmt(normal.peak_gb, '.1f')} GB), 50-step video {low.total_50:.1f} vs "
                         f"{normal.total_50:.1f} s (x{low.total_50 / normal.total_50:.3f}); tiles vs whole frames "
                         f"{_fmt(low.error, '.1e')}")
        cached, plain = find("loop, step cache"), find("loop, no step cache")
        if cached and plain:
            lines.append(f"goal 5, step cache: x{cached.seconds / plain.seconds:.2f} of the uncached time per step, "
                         f"final latents off by {_fmt(cached.error, '.1e')} (random weights: see its notes)")
        if "host_syncs_per_step_pack_loop" in self.facts:
            lines.append(f"host syncs per step: pack loop {self.facts['host_syncs_per_step_pack_loop']}, diffusers "
                         f"pipeline {self.facts['host_syncs_per_step_diffusers_pipeline']}")
        return lines

    def table(self) -> str:
        head = (f"{'variant':58s} {'kind':5s} {'s/step':>8s} {'50 steps':>8s} {'TFLOP/s':>7s} {'peak GB':>7s} "
                f"{'rel. error':>10s}")
        return "\n".join([head, "-" * len(head)] + [self._line(row) for row in self.rows])

    def markdown(self) -> str:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        versions = {name: getattr(__import__(name), "__version__", "?") for name in ("torch", "diffusers", "peft")}
        lines = [
            "# DimensionX video benchmark (bench/video_bench.py)", "",
            f"- date: {now}",
            f"- device: {self.facts.get('gpu', 'CPU (tiny models)')}, "
            f"{self.facts.get('gpu_memory_gb', '-')} GB; python {platform.python_version()}; "
            + ", ".join(f"{k} {v}" for k, v in versions.items()),
            f"- command: `{' '.join(['python3'] + sys.argv)}` (how the lead runs it: bench/README.md)",
            f"- one guided step = {self.facts.get('flops_per_guided_step', 0) / 1e12:.1f} TFLOP "
            f"({self.facts.get('tokens')} tokens x batch 2); measured bf16 matmul rate "
            f"{self.facts.get('matmul_tflops_bf16')} TFLOP/s, so the compute floor is "
            f"{self.facts.get('compute_floor_s')} s/step",
            f"- elapsed: {time.perf_counter() - self.started:.0f} s", "",
            "| variant | kind | s/step | 50 steps (s) | TFLOP/s | peak GB | rel. error | vs | notes |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in self.rows:
            cells = [row.name, row.kind, _fmt(row.seconds, ".3f"), _fmt(row.total_50, ".1f"), _fmt(row.tflops, ".1f"),
                     _fmt(row.peak_gb, ".2f"), _fmt(row.error, ".2e"), row.reference,
                     "; ".join(n for n in row.notes if n) if row.status == "ok" else row.status]
            lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
        lines += ["", "## Against the goals (issue 7)", ""] + [f"- {line}" for line in self.summary()]
        lines += ["", "## Other measurements", "", "```", json.dumps(self.facts, indent=1, default=str), "```", "",
                  "kind: `call` = one guided transformer call (batch 2); `loop` = one step of a denoising loop "
                  "(transformer, guidance, scheduler, director switch); `run` = a whole image->video run with 3 steps, "
                  "its 50-step total extrapolated as fixed costs + 50 x step. Errors: relative L2 of one step's "
                  "output (calls) or of the final latents (loops) against the named reference. Random weights.",
                  "switch_ms_*: wall time of one director switch; merge_prepare_s / merge_restore_s: the host copy "
                  "of the targeted base weights taken before a merged run and copied back (bit-exact) after it."]
        return "\n".join(lines) + "\n"

    def write(self, final: bool = False) -> None:
        payload = {"facts": self.facts, "rows": [asdict(r) for r in self.rows]}
        for folder in self.out_dirs:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "RESULTS.md").write_text(self.markdown())
            (folder / "results.json").write_text(json.dumps(payload, indent=1, default=str))
        if final:
            print("\n" + self.table())
            print("\n" + "\n".join(self.summary()))
            print(f"\nwritten: {', '.join(str(f / 'RESULTS.md') for f in self.out_dirs)}")


def _fmt(value, fmt):
    return format(value, fmt) if value is not None else "-"


def _syncs(run) -> float:
    """Host syncs per step: CUDA's sync debug mode warns at each; syncs of 2 steps - syncs of 1 step."""
    import warnings

    counts = []
    for steps in (1, 2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                run(steps)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
    return counts[1] - counts[0]


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int):
    """Raise _Timeout in the main thread after `seconds` (0: no limit). A running GPU kernel finishes first."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise _Timeout(f"variant ran past its {seconds} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def bench_parser(description: str, results: str, budget: float) -> argparse.ArgumentParser:
    """The options every video benchmark takes: --tiny, --budget, --out, --device."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: checks the script's logic")
    parser.add_argument("--budget", type=float, default=budget, help=f"seconds for the whole run (default {budget:g})")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "bench"),
                        help=f"folder for {results} (default $OUT, else bench/)")
    parser.add_argument("--device", default="cuda", help="default cuda")
    return parser


def parsed(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA GPU: run on the GPU machine, or use --tiny to check the logic on the CPU")
    return args


def parse_args(argv=None):
    parser = bench_parser(__doc__.split("\n\n")[0], "RESULTS.md and results.json", 510)
    parser.add_argument("--quick", action="store_true", help="2 timed repeats, no second compile (~5 minutes)")
    parser.add_argument("--only", help="comma-separated variant groups to run (names as printed)")
    parser.add_argument("--step-cache", type=float, default=0.1, help="step cache threshold to measure (0.1)")
    return parsed(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    bench.run()
    failed = [row.name for row in bench.rows if row.status.startswith("failed")]
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
