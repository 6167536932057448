"""Resumable training: one checkpoint file per run, replaced atomically, so a crash or a Cancel keeps the last.

It holds what the next step depends on: the adapter's weights, the optimizer's state, the step and the curves.
Everything random is drawn from generators seeded by (seed, step, slot), and the data order from (seed, epoch),
so nothing else has to be saved for a resumed run to take exactly the steps an uninterrupted one takes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..files import atomic_path

CHECKPOINT_FILE = "checkpoint.pt"


def run_identity(model: str, dataset_fingerprint: str, weights_options: dict) -> str:
    """What a checkpoint must match to be resumed: the model, the dataset and the options that shape weights."""
    text = json.dumps({"model": model, "dataset": dataset_fingerprint, "options": weights_options}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


class CheckpointStore:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @property
    def path(self) -> Path:
        return self.folder / CHECKPOINT_FILE

    def load(self, identity: str) -> dict | None:
        """The saved state, or None when there is none; a checkpoint of another run is refused by name."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a damaged file of any kind
            raise ValueError(f"checkpoint '{self.path}' cannot be read ({type(err).__name__}: {err}); delete it to "
                             "start over") from err
        if state.get("identity") != identity:
            raise ValueError(f"checkpoint '{self.path}' (step {state.get('step')}) belongs to another run: the model, "
                             "the dataset, the options that shape the weights (rank, alpha, learning rate, batch "
                             "size, seed, optimizer...) or the number of workers differ. Use the same ones to "
                             "resume, or another checkpoint folder (or delete this one) to start over.")
        return state

    def step_saved(self) -> int | None:
        """The step of the checkpoint on disk, without checking whose it is."""
        if not self.path.is_file():
            return None
        return int(torch.load(self.path, map_location="cpu", weights_only=True).get("step", 0))

    def save(self, state: dict) -> None:
        with atomic_path(self.path) as part:
            torch.save(state, part)
