"""DimensionX's 145-frame 360-degree model at full size, with random weights, on one GPU: seconds per guided step and
the whole 50-step video with its decode, in the normal and the 24 GB mode, with peak memory per phase.

Builds the CogVideoX-5B-I2V transformer in the converted 360 model's layout (145 frames at 480x320: 37 latent
frames, 22,200 video + 226 text = 22,426 tokens, guidance on: batch 2), the full-size VAE and T5-XXL, all with
random weights in bf16 on the GPU, and the release's sampler (SAT's DPM++ 2M, dynamic CFG: what "auto" resolves to
for a converted SAT checkpoint). Measures one guided transformer call (a few timed after a warm-up), the T5 encode
and the first-frame encode, then the pack's whole image->video run with 3 steps unconstrained and in the 24 GB mode
under a 22 GB allocator cap (bench/video_bench.py's whole_run and low_memory_whole_run); a 50-step video is fixed
costs + 50 x step. Compares with the release's figure (README of wenqsun/DimensionX: about 6 minutes and 30.52 GB on
an A6000). Stops starting new phases when --budget seconds are spent; writes $OUT/RESULTS-360.md and prints it.

    PYTHONUNBUFFERED=1 python3 bench/video360_bench.py              # on the GPU; about 2-3 minutes
    python bench/video360_bench.py --tiny --out /tmp/bench360        # the same logic on the CPU, tiny 145 layout
"""
from __future__ import annotations

import datetime
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# noqa: E402 below: the repository root goes on the path first
from video_bench import (GB, WordTokenizer, bench_parser, build_modules, guided_step_flops,  # noqa: E402
                         low_memory_whole_run, parsed, peak_gb, reset_peak, synchronize, timed_calls, whole_run)

from dimx_core.cogvideox.spec import (COGVIDEOX_5B_I2V_SCHEDULER, COGVIDEOX_5B_I2V_TRANSFORMER,  # noqa: E402
                                      COGVIDEOX_5B_I2V_VAE, T5_XXL_ENCODER, spec_from_configs)
from dimx_core.speed.options import SpeedOptions  # noqa: E402
from dimx_core.speed.session import attention_shape, speed_applied  # noqa: E402
from dimx_core.tiny import TINY_T5, TINY_TRANSFORMER_145, TINY_VAE  # noqa: E402
from dimx_core.video.components import VideoComponents  # noqa: E402
from dimx_core.video.conditioning import encode_image_latents, encode_prompt  # noqa: E402
from dimx_core.video.release import SAT_RELEASE  # noqa: E402
from dimx_core.video.sampling import rotary_embeddings  # noqa: E402

# The converted 360-degree model's transformer config: 5B-I2V with the 145-frame learned table (dimx convert-sat)
TRANSFORMER_360 = dict(COGVIDEOX_5B_I2V_TRANSFORMER, sample_frames=145, sample_height=40, sample_width=60)
RELEASE = {"seconds": 360.0, "peak_gb": 30.52, "gpu": "NVIDIA A6000 (48 GB)",
           "source": "wenqsun/DimensionX README: 'On a single NVIDIA A6000 GPU, the model generates a 145-frame, "
                     "18-second, 360-degree orbit video in approximately 6 minutes, utilizing about 30.52 GB of VRAM.'"}
TIMED_CALLS = 3


@dataclass
class Phase:
    name: str
    seconds: float | None = None
    peak_gb: float | None = None
    note: str = ""


@dataclass
class Results:
    facts: dict = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    modes: dict = field(default_factory=dict)   # mode -> WholeRun
    notes: dict = field(default_factory=dict)   # mode -> what happened
    skipped: list[str] = field(default_factory=list)


class Bench360:
    def __init__(self, args):
        self.args = args
        self.device = torch.device("cpu" if args.tiny else args.device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.dtype = torch.bfloat16
        self.started = time.perf_counter()
        self.results = Results()

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.started)

    def fits(self, name: str, estimate: float) -> bool:
        """Whether a phase of about `estimate` seconds on an H200 fits the budget (the tiny run always runs)."""
        if self.args.tiny or self.left() >= estimate:
            return True
        self.results.skipped.append(f"{name}: {self.left():.0f} s of the budget left, needs ~{estimate:.0f}")
        print(f"skipped {name}")
        return False

    def build(self) -> VideoComponents:
        tiny = self.args.tiny
        configs = ((TINY_TRANSFORMER_145, TINY_VAE, dict(TINY_T5, vocab_size=420)) if tiny
                   else (TRANSFORMER_360, COGVIDEOX_5B_I2V_VAE, T5_XXL_ENCODER))
        started = time.perf_counter()
        built = build_modules(*configs, self.device, self.dtype, which=("transformer", "vae", "text_encoder"))
        synchronize(self.device)
        spec = spec_from_configs(dict(built["transformer"].config), configs[1])
        facts = self.results.facts
        facts["build_s"] = round(time.perf_counter() - started, 1)
        facts["model"] = spec.describe()
        if self.device.type == "cuda":
            facts["gpu"] = torch.cuda.get_device_name(self.device)
            facts["gpu_memory_gb"] = round(torch.cuda.get_device_properties(self.device).total_memory / GB, 1)
        return VideoComponents(built["transformer"], built["vae"], built["text_encoder"],
                               WordTokenizer(configs[2]["vocab_size"]), COGVIDEOX_5B_I2V_SCHEDULER, spec,
                               "random weights", SAT_RELEASE)

    def guided_step(self, parts: VideoComponents) -> None:
        """One guided transformer call (batch 2) with the pack's default speed-ups, after a warm-up."""
        spec, config, device = parts.spec, parts.transformer.config, self.device
        generator = torch.Generator(device=device).manual_seed(0)
        h, w = spec.height // spec.spatial_factor, spec.width // spec.spatial_factor
        latents = torch.randn(2, spec.latent_frames, 2 * spec.latent_channels, h, w, generator=generator,
                              device=device, dtype=self.dtype)
        text = torch.randn(2, spec.text_tokens, config.text_embed_dim, generator=generator, device=device,
                           dtype=self.dtype) * 0.2
        timestep = torch.full((2,), 500, device=device, dtype=torch.long)
        rotary = rotary_embeddings(config, (1, spec.latent_frames, spec.latent_channels, h, w), device)
        shape = attention_shape(config, (2, spec.latent_frames, spec.latent_channels, h, w), spec.text_tokens)
        tokens, video_tokens = shape[2], shape[2] - spec.text_tokens
        parts.transformer.to(device)
        notes: list[str] = []
        reset_peak(device)
        with torch.no_grad(), speed_applied(parts.transformer, SpeedOptions(), None, shape, notes, "inductor"):
            seconds, times, _ = timed_calls(
                lambda: parts.transformer(hidden_states=latents, encoder_hidden_states=text, timestep=timestep,
                                          image_rotary_emb=rotary, return_dict=False)[0], device, TIMED_CALLS)
        flops = guided_step_flops(config, tokens, 2, video_tokens)
        self.results.facts.update(tokens=tokens, video_tokens=video_tokens, flops_per_guided_step=flops,
                                  step_tflops=round(flops / seconds / 1e12, 1))
        self.results.phases.append(Phase("guided step (transformer call, batch 2, pack defaults)", seconds,
                                         peak_gb(device), "; ".join(notes + [f"times {', '.join(f'{t:.3f}' for t in times)}"])))

    def encodes(self, parts: VideoComponents) -> None:
        """The fixed costs before the loop: T5 on the prompt, the VAE on the first frame (each after a warm-up)."""
        spec, device = parts.spec, self.device
        parts.text_encoder.to(device)
        reset_peak(device)
        seconds, _, _ = timed_calls(lambda: encode_prompt(parts.tokenizer, parts.text_encoder, "a cat walks on the moon",
                                                          spec.text_tokens, device, self.dtype), device, 2)
        self.results.phases.append(Phase("T5-XXL prompt encode", seconds, peak_gb(device)))
        parts.vae.to(device)
        pixels = torch.rand(1, 3, spec.height, spec.width, device=device, dtype=self.dtype) * 2 - 1
        generator = torch.Generator(device=device).manual_seed(0)
        reset_peak(device)
        seconds, _, _ = timed_calls(lambda: encode_image_latents(parts.vae, pixels, spec, spec.latent_frames, generator,
                                                                 self.dtype), device, 2)
        self.results.phases.append(Phase("first-frame VAE encode", seconds, peak_gb(device)))

    def run(self) -> Results:
        parts = self.build()
        print(f"built in {self.results.facts['build_s']} s: {self.results.facts['model']}")
        with torch.no_grad():
            if self.fits("guided step", 15):
                self.guided_step(parts)
            if self.fits("encodes", 10):
                self.encodes(parts)
            image = torch.rand(parts.spec.height, parts.spec.width, 3, generator=torch.Generator().manual_seed(0))
            if self.fits("whole run, normal mode", 40):
                self.results.modes["normal"] = whole_run(parts, image, SpeedOptions(), self.device)
                self.results.notes["normal"] = "T5 resident, VAE untiled"
            if self.fits("whole run, 24 GB mode", 60):
                run, what = low_memory_whole_run(parts, image, self.device)
                self.results.modes["24 GB mode"], self.results.notes["24 GB mode"] = run, what
        self.results.facts["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        return self.results


def _fmt(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(results: Results, command: str) -> str:
    facts, now = results.facts, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = {name: getattr(__import__(name), "__version__", "?") for name in ("torch", "diffusers", "transformers")}
    lines = ["# DimensionX 360-degree model (145 frames, 480x320): step, whole video, memory (bench/video360_bench.py)",
             "", f"- date: {now}; device: {facts.get('gpu', 'CPU (tiny 145-frame layout)')}, "
             f"{facts.get('gpu_memory_gb', '-')} GB; python {platform.python_version()}; "
             + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"- command: `{command}`",
             f"- model: {facts.get('model')}, random weights, bf16; built in {facts.get('build_s')} s; "
             f"{facts.get('tokens')} tokens per sample ({facts.get('video_tokens')} video), guidance on (batch 2); "
             f"sampler: {SAT_RELEASE.describe()}",
             f"- elapsed: {facts.get('elapsed_s')} s", "", "## Phases", "",
             "| phase | seconds | peak GB | notes |", "| --- | --- | --- | --- |"]
    lines += [f"| {p.name} | {_fmt(p.seconds, '.3f')} | {_fmt(p.peak_gb, '.2f')} | {p.note} |" for p in results.phases]
    if facts.get("step_tflops"):
        lines += ["", f"One guided step is {facts['flops_per_guided_step'] / 1e12:.1f} TFLOP: "
                      f"{facts['step_tflops']} TFLOP/s achieved."]
    lines += ["", "## The whole 50-step video (fixed costs + 50 x step, from a 3-step run)", "",
              "| mode | s/step | to the end of step 1 (T5, encode, step) | decode 145 frames | fixed costs | "
              "50-step video | peak GB up to step 1 / loop / decode | notes |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode, run in results.modes.items():
        peaks = " / ".join(f"{p:.1f}" for p in run.peaks_gb) or "-"
        lines.append(f"| {mode} | {run.per_step_s:.3f} | {run.first_step_s:.1f} | {run.decode_s:.1f} | "
                     f"{run.fixed_s:.1f} | **{run.total_50:.1f} s** | {peaks} | {results.notes[mode]} |")
    lines += ["", "## Against the release", "", f"- {RELEASE['source']}"]
    for mode, run in results.modes.items():
        peak = max(run.peaks_gb, default=None)
        lines.append(f"- {mode}: {run.total_50:.0f} s for the 50-step video vs about {RELEASE['seconds']:.0f} s "
                     f"(x{RELEASE['seconds'] / run.total_50:.1f} faster), peak {_fmt(peak, '.1f')} GB vs "
                     f"{RELEASE['peak_gb']} GB; the release ran SAT on an {RELEASE['gpu']}, this ran the pack on "
                     f"{facts.get('gpu', 'the CPU')}, so the time compares hardware as much as software")
    if "24 GB mode" in results.modes and "normal" in results.modes:
        low, normal = results.modes["24 GB mode"], results.modes["normal"]
        difference = ((low.result.frames - normal.result.frames).norm() / normal.result.frames.norm()).item()
        lines.append(f"- 24 GB mode vs normal: x{low.total_50 / normal.total_50:.3f} the time; latents identical: "
                     f"{torch.equal(low.result.latents, normal.result.latents)}; frames (tiles vs whole) differ by "
                     f"{difference:.2e} relative L2 (random weights)")
    lines += [f"- skipped: {item}" for item in results.skipped]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    return parsed(bench_parser(__doc__.split("\n\n")[0], "RESULTS-360.md", 240), argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    results = Bench360(args).run()
    text = markdown(results, " ".join(["python3"] + sys.argv))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "RESULTS-360.md").write_text(text)
    print("\n" + text)
    print(f"written: {out / 'RESULTS-360.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
