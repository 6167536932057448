"""What a director training run does, as one value: the trainer, the nodes, the CLI and a resume share it."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..optional import require

ROLES = {"s": "S", "t": "T"}  # --kind s|t -> the director's role as Load Director LoRA names it


def _adamw(params, lr: float, weight_decay: float):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _adamw_8bit(params, lr: float, weight_decay: float):
    bitsandbytes = require("bitsandbytes", "8-bit AdamW (optimizer adamw8bit)")
    return bitsandbytes.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)


# name -> (what it is, how to build it from (parameters, lr, weight_decay))
OPTIMIZERS: dict[str, tuple[str, Callable]] = {
    "adamw": ("torch AdamW, fp32 moments (8 bytes per LoRA weight)", _adamw),
    "adamw8bit": ("bitsandbytes 8-bit AdamW (2 bytes per LoRA weight; pip install bitsandbytes)", _adamw_8bit),
}


@dataclass(frozen=True)
class TrainOptions:
    """Defaults are the paper's (rank 256, lr 1e-3, 3000 steps) and SAT's, which DimensionX trained with
    (alpha 1, so the trained effect is W + B·A / rank; CogVideoX I2V's image-noise augmentation and 5% image
    dropout)."""
    kind: str = "s"                     # "s": S-Director (camera), "t": T-Director (motion); recorded in the file
    rank: int = 256
    alpha: float = 1.0
    learning_rate: float = 1e-3
    steps: int = 3000
    batch_size: int = 1                 # clips per step on each process
    seed: int = 0                       # data order, timesteps, noise: a resumed run repeats them exactly
    optimizer: str = "adamw"            # a key of OPTIMIZERS
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0          # 0: no clipping
    gradient_checkpointing: bool = True
    low_memory: bool = False            # 24 GB mode: the VAE encodes and decodes in tiles
    checkpoint_every: int = 250         # steps between resumable checkpoints (0: only when cancelled)
    eval_every: int = 100               # steps between fixed-noise evaluations (0: off)
    eval_samples: int = 4               # (clip, timestep, noise) triples of the evaluation, fixed for the run
    early_stop_patience: int = 0        # stop after this many evaluations without a new best (0: never)
    image_noise_variants: int = 8       # noised first-frame latents kept per clip (the VAE is unloaded in training)
    image_dropout: float = 0.05         # share of steps whose first-frame latents are zeroed (SAT's I2V setting)
    validation_steps: tuple[int, ...] = ()  # steps that render a validation video, besides the last one
    validation: bool = True             # render one at the last step
    validation_inference_steps: int = 50
    validation_guidance: float = 6.0
    validation_seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ROLES:
            raise ValueError(f"kind must be 's' (S-Director, camera) or 't' (T-Director, motion), got {self.kind!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank must be a whole number >= 1 (the paper uses 256), got {self.rank!r}")
        for name in ("alpha", "learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name, low in (("steps", 1), ("batch_size", 1), ("seed", 0), ("validation_seed", 0),
                          ("checkpoint_every", 0), ("eval_every", 0),
                          ("eval_samples", 1), ("early_stop_patience", 0), ("image_noise_variants", 1),
                          ("validation_inference_steps", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not 0.0 <= self.image_dropout < 1.0:
            raise ValueError(f"image_dropout is a share of steps in [0, 1), got {self.image_dropout}")
        if not (self.weight_decay >= 0 and self.max_grad_norm >= 0):
            raise ValueError("weight_decay and max_grad_norm must be >= 0")
        if self.early_stop_patience and not self.eval_every:
            raise ValueError("early_stop_patience needs eval_every > 0: early stopping watches the evaluation loss")
        bad = [step for step in self.validation_steps if not 1 <= step <= self.steps]
        if bad:
            raise ValueError(f"validation_steps {bad} are outside the run's steps 1..{self.steps}")

    @property
    def role(self) -> str:
        return ROLES[self.kind]

    def weights_identity(self) -> dict:
        """The options that decide the trained weights step by step: a checkpoint resumes only under these.
        (steps, checkpoints, evaluation, early stop and validation change when a run ends or what it shows.)"""
        keep = ("rank", "alpha", "learning_rate", "batch_size", "seed", "optimizer", "weight_decay",
                "max_grad_norm", "image_noise_variants", "image_dropout")
        return {name: getattr(self, name) for name in keep}

    def replace(self, **changes) -> "TrainOptions":
        return dataclasses.replace(self, **changes)


def parse_steps(text: str) -> tuple[int, ...]:
    """'500, 1000 2000' -> (500, 1000, 2000)."""
    words = (text or "").replace(",", " ").split()
    try:
        return tuple(sorted({int(word) for word in words}))
    except ValueError:
        raise ValueError(f"validation steps must be whole numbers separated by commas, got {text!r}") from None
