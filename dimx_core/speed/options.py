"""What a run may do to go faster, as one small value passed to the loop, the nodes and the CLI."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

# "auto": the fastest lossless kernel measured on this GPU (PyTorch SDPA's backends, FlashAttention-3/4 if installed);
# SDPA's own choice on the CPU. "sage" is lossy (8-bit QK) and only runs when asked for.
ATTENTION_CHOICES = ("auto", "sdpa", "cudnn", "flash", "efficient", "fa3", "fa4", "sage")


@dataclass(frozen=True)
class LossyOptions:
    """The speed-ups that change what a run makes, not only how fast (fp8 products, step caching): they belong to a
    run's request and its content key; the other options are how fast a machine makes the same result. The field
    names are SpeedOptions' own."""
    fp8: bool = False
    step_cache: float = 0.0


@dataclass(frozen=True)
class SpeedOptions:
    """Defaults: every lossless speed-up on, every lossy or slow-to-start one off.

    attention: one of ATTENTION_CHOICES.
    fuse_qkv: one matrix product for q, k and v instead of three (same weights, views of one tensor).
    merge_directors: add the active directors' LoRA deltas into the weights at each switch, so a step costs what
        a plain image-to-video step costs; the base weights are restored bit-exactly when the run ends.
    compile: torch.compile of the transformer block (regional); the first run pays the compile time.
    compile_cache: folder for torch's compile cache (kept between sessions); None: torch's default.
    fp8: block linears as fp8 e4m3 weights and per-token fp8 activations (Ada/Hopper GPUs); lossy.
    low_memory: the 24 GB mode: T5 leaves the GPU once the prompt is encoded, the VAE works in tiles.
    step_cache: first-block cache threshold (diffusers' FirstBlockCache): a step whose first-block residual changed
        by less than this (relative) reuses the last full step's residual. 0 = off; lossy.
    """
    attention: str = "auto"
    fuse_qkv: bool = True
    merge_directors: bool = True
    compile: bool = False
    compile_cache: str | None = field(default=None, compare=False)
    fp8: bool = False
    low_memory: bool = False
    step_cache: float = 0.0

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_CHOICES)}, got {self.attention!r}")
        if not (math.isfinite(self.step_cache) and 0.0 <= self.step_cache < 1.0):
            raise ValueError(f"step_cache is a relative threshold in [0, 1) (0 = off), got {self.step_cache}")

    def lossy(self) -> LossyOptions:
        return LossyOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LossyOptions)})

    def with_lossy(self, lossy: LossyOptions) -> "SpeedOptions":
        """These options with the result-changing ones taken from `lossy` (a request's)."""
        return dataclasses.replace(self, **dataclasses.asdict(lossy))

    @classmethod
    def off(cls) -> "SpeedOptions":
        """diffusers' own arithmetic, nothing changed: the reference the options are measured against."""
        return cls(attention="sdpa", fuse_qkv=False, merge_directors=False)

    def describe(self) -> str:
        parts = [f"attention {self.attention}"]
        parts += [name for name, on in (("fused QKV", self.fuse_qkv), ("merged directors", self.merge_directors),
                                        ("compiled blocks", self.compile), ("fp8", self.fp8),
                                        ("24 GB mode", self.low_memory)) if on]
        if self.step_cache:
            parts.append(f"step cache {self.step_cache:g}")
        return ", ".join(parts)
