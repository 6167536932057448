"""SAT / DeepSpeed training checkpoints, found and read as data only.

SAT (SwissArmyTransformer, the trainer of CogVideoX and DimensionX) saves `<folder>/<iteration>/
mp_rank_00_model_states.pt` and a `<folder>/latest` file naming the iteration. The file is a pickle, so it is read
with torch's weights-only unpickler plus an allow-list of exactly the globals the public save code puts there
beyond what that unpickler already takes (tensors, torch.Size, OrderedDict, sets, numbers, strings, None):

- DeepSpeed's `DeepSpeedEngine._save_checkpoint` (0.14): `module` (the state dict), `buffer_names` (list of str),
  `optimizer` (None under ZeRO or bf16), `param_shapes` (list of OrderedDict name -> torch.Size),
  `frozen_param_shapes`/`frozen_param_fragments`/`shared_params` (dicts or None), `lr_scheduler`, `data_sampler`,
  `random_ltd` (dicts or None), `sparse_tensor_module_names` (set), `skipped_steps`, `global_steps`,
  `global_samples`, `dp_world_size`, `mp_world_size` (int), `ds_config` (the DeepSpeed config as a plain dict:
  SAT passes OmegaConf.to_object of its YAML), `ds_version` (str);
- SAT's client state (`sat/training/model_io.save_ds_checkpoint`): `iteration`, `client_lr_scheduler` (a dict of
  numbers and str), `random_rng_state` (Python's: a tuple of ints), `np_rng_state` (numpy's MT19937 state, whose
  key is a uint32 ndarray: the only reason for the numpy globals below), `torch_rng_state`/`cuda_rng_state` (uint8
  tensors);
- SAT's inference save: `{"module": state_dict}`, the form CogVideoX's SAT weights were released in.

No save path stores an argument namespace (SAT writes its arguments to model_config.json beside the folder). A file
that needs any other global is refused with the global's name before anything is unpickled.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy
import torch

CHECKPOINT_FILE = "mp_rank_00_model_states.pt"
TRACKER_FILE = "latest"  # SAT's tracker: the name of the iteration subfolder (get_checkpoint_tracker_filename)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6


def _numpy_multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray
    return multiarray


def allowed_globals() -> list:
    """The globals an `np_rng_state` needs, under the names numpy 1.x and numpy 2.x writers give them."""
    reconstruct = _numpy_multiarray()._reconstruct
    return [(reconstruct, "numpy.core.multiarray._reconstruct"), (reconstruct, "numpy._core.multiarray._reconstruct"),
            numpy.ndarray, numpy.dtype, type(numpy.dtype(numpy.uint32))]


@dataclass
class SatCheckpoint:
    """The model state of one SAT checkpoint; `record` keeps the rest of what the file held (for reports)."""
    file: Path
    state: dict[str, torch.Tensor]
    record: dict = field(default_factory=dict)

    def describe(self) -> str:
        facts = [f"{len(self.state)} tensors"]
        if "iteration" in self.record:
            facts.append(f"iteration {self.record['iteration']}")
        if "ds_version" in self.record:
            facts.append(f"DeepSpeed {self.record['ds_version']}")
        return f"SAT checkpoint {self.file} ({', '.join(facts)})"


def checkpoint_file(path: str | Path) -> Path:
    """The `mp_rank_00_model_states.pt` behind `path`: the file itself, an iteration folder, or the folder SAT
    saves (with `latest` naming the iteration subfolder)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"SAT checkpoint '{path}' does not exist")
    tracker = path / TRACKER_FILE
    if tracker.is_file():
        tag = tracker.read_text(encoding="utf-8", errors="replace")[:256].strip()
        if not tag or Path(tag).name != tag or tag in (".", ".."):
            raise ValueError(f"'{tracker}' should name the iteration subfolder of '{path}' (such as 1 or 3000), "
                             f"but holds {tag!r}")
        folder = path / tag
        if not folder.is_dir():
            raise FileNotFoundError(f"'{tracker}' names the iteration folder '{tag}', but '{path}' has no such "
                                    "subfolder: the download is incomplete (it should hold "
                                    f"{tag}/{CHECKPOINT_FILE})")
    elif (path / CHECKPOINT_FILE).is_file():
        folder = path
    else:
        raise FileNotFoundError(f"'{path}' is not a SAT checkpoint folder: it has neither a '{TRACKER_FILE}' file "
                                f"naming the iteration subfolder nor a {CHECKPOINT_FILE}")
    if (folder / "mp_rank_01_model_states.pt").exists():
        raise ValueError(f"'{folder}' is split over several model-parallel ranks (mp_rank_01_model_states.pt "
                         "exists); only single-rank checkpoints, as SAT releases them, can be converted")
    file = folder / CHECKPOINT_FILE
    if not file.is_file():
        found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise FileNotFoundError(f"'{folder}' has no {CHECKPOINT_FILE} (it holds {found})")
    return file


def read_sat_checkpoint(path: str | Path) -> SatCheckpoint:
    """Read the checkpoint behind `path` (see checkpoint_file) without running anything it contains.

    The tensors are memory-mapped, so a 20 GB file costs no 20 GB of RAM until its tensors are used."""
    file = checkpoint_file(path)
    with open(file, "rb") as handle:
        if handle.read(4) != ZIP_MAGIC:
            raise ValueError(f"'{file}' is not a checkpoint written by torch.save (a zip archive, as DeepSpeed and SAT "
                             "write them)")
    unreadable = (f"'{file}' is not a complete PyTorch checkpoint: it may be truncated or still downloading "
                  f"({file.stat().st_size} bytes)")
    with torch.serialization.safe_globals(allowed_globals()):
        try:
            foreign = torch.serialization.get_unsafe_globals_in_checkpoint(str(file))
        except (ValueError, RuntimeError, zipfile.BadZipFile, EOFError, KeyError) as err:
            raise ValueError(f"{unreadable}: {err}") from err
        if foreign:
            raise ValueError(f"'{file}' needs {', '.join(sorted(foreign))} to be unpickled, which no SAT or DeepSpeed "
                             "checkpoint holds; it was refused without running it. Convert only checkpoints from a "
                             "source you trust, as SAT saved them.")
        try:
            loaded = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as err:
            raise ValueError(f"{unreadable}: {err}") from err
    if not isinstance(loaded, dict):
        raise ValueError(f"'{file}' holds a {type(loaded).__name__}, not a SAT/DeepSpeed checkpoint record")
    record = dict(loaded)
    state = record.pop("module", None)
    if state is None and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        state, record = dict(loaded), {}
    if not isinstance(state, dict) or not state:
        raise ValueError(f"'{file}' has no model state ('module'): its entries are {sorted(loaded)[:8]}")
    strays = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if strays:
        raise ValueError(f"'{file}': the model state holds non-tensor entries {strays[:3]}")
    return SatCheckpoint(file=file, state=dict(state), record=record)


def find_sat_checkpoints(roots: list[str | Path]) -> list[str]:
    """SAT checkpoints under `roots`, relative to their root: folders with a `latest` file whose iteration
    subfolder exists, and lone mp_rank_00_model_states.pt files outside such folders. Hidden folders (files being
    written) and links are skipped."""
    found = []
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        names = []
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(s for s in subfolders if not s.startswith("."))
            here = Path(folder)
            if TRACKER_FILE in files:
                try:
                    checkpoint_file(here)
                except (OSError, ValueError):
                    continue
                names.append(here.relative_to(root).as_posix())
                subfolders[:] = []  # its iteration folders belong to it
            elif CHECKPOINT_FILE in files:
                names.append((here / CHECKPOINT_FILE).relative_to(root).as_posix())
        found += sorted(names)
    return list(dict.fromkeys(found))


def resolve_sat_checkpoint(roots: list[str | Path], name: str) -> Path:
    """The checkpoint a combo value names; names that are not listed (or lead outside the roots) are refused."""
    if name not in find_sat_checkpoints(roots):
        raise ValueError(f"SAT checkpoint '{name}' is not in {', '.join(map(str, roots))}. Put the folder with "
                         f"'{TRACKER_FILE}' and its iteration subfolder (or the {CHECKPOINT_FILE} file) there and "
                         "refresh.")
    for root in map(Path, roots):
        candidate = (root / name).resolve()
        if candidate.is_relative_to(root.resolve()) and candidate.exists():
            return candidate
    raise FileNotFoundError(f"SAT checkpoint '{name}' disappeared")
