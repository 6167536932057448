"""Reading SAT/DeepSpeed checkpoints as data only: both record forms, SAT's folder layout, and every refusal."""
import os
import pickle
import random
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from dimx_core.sat_checkpoint import (checkpoint_file, find_sat_checkpoints, read_sat_checkpoint,
                                      resolve_sat_checkpoint)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sat_writers import deepspeed_record, sat_transformer_state, write_sat_folder  # noqa: E402


@pytest.fixture(scope="module")
def state():
    return sat_transformer_state(layers=1, lora_rank=4)


def assert_same_tensors(read, expected):
    assert sorted(read) == sorted(expected)
    assert all(torch.equal(read[k], expected[k]) for k in expected)


def test_bare_module_record_reads_as_its_state(tmp_path, state):
    torch.save({"module": state}, tmp_path / "mp_rank_00_model_states.pt")
    loaded = read_sat_checkpoint(tmp_path / "mp_rank_00_model_states.pt")
    assert_same_tensors(loaded.state, state)
    assert loaded.record == {}


def test_deepspeed_record_with_client_and_rng_states_is_read_without_extra_code(tmp_path, state):
    folder = write_sat_folder(tmp_path / "checkpoints", deepspeed_record(state), tag="3000")
    loaded = read_sat_checkpoint(folder)
    assert_same_tensors(loaded.state, state)
    assert loaded.file == folder / "3000" / "mp_rank_00_model_states.pt"
    record = loaded.record
    assert record["iteration"] == 3000 and record["ds_version"] == "0.14.4" and record["optimizer"] is None
    assert record["sparse_tensor_module_names"] == set()
    shapes = record["param_shapes"][0]
    assert shapes["model.diffusion_model.transformer.layers.0.attention.dense.matrix_A.0"] == torch.Size([4, 32])
    key = record["np_rng_state"][1]
    assert key.dtype == np.uint32 and np.array_equal(key, np.random.RandomState(0).get_state()[1])
    assert record["random_rng_state"] == random.Random(0).getstate()
    assert "iteration 3000, DeepSpeed 0.14.4" in loaded.describe()


class _Numpy1Pickler(pickle._Pickler):
    """Writes numpy's array reconstructor under its numpy 1.x module name, as older SAT environments saved it."""

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "")
        if module == "numpy._core.multiarray":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + obj.__name__.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def test_rng_state_pickled_by_numpy_1_is_read_too(tmp_path, state):
    numpy1 = types.SimpleNamespace(Pickler=_Numpy1Pickler, __name__="pickle")
    torch.save(deepspeed_record(state), tmp_path / "old.pt", pickle_module=numpy1)
    assert b"numpy.core.multiarray" in (tmp_path / "old.pt").read_bytes()
    loaded = read_sat_checkpoint(tmp_path / "old.pt")
    assert np.array_equal(loaded.record["np_rng_state"][1], np.random.RandomState(0).get_state()[1])


def test_folder_forms_resolve_to_the_iteration_file(tmp_path, state):
    folder = write_sat_folder(tmp_path / "checkpoints", {"module": state}, tag="1")
    file = folder / "1" / "mp_rank_00_model_states.pt"
    assert checkpoint_file(folder) == file
    assert checkpoint_file(folder / "1") == file
    assert checkpoint_file(file) == file


def test_folder_without_latest_or_checkpoint_is_refused_by_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="'latest' file naming the iteration subfolder"):
        read_sat_checkpoint(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_sat_checkpoint(tmp_path / "nowhere")


def test_latest_naming_a_missing_or_foreign_folder_is_refused(tmp_path, state):
    folder = write_sat_folder(tmp_path / "checkpoints", {"module": state}, tag="1")
    (folder / "latest").write_text("2000\n")
    with pytest.raises(FileNotFoundError, match="names the iteration folder '2000'.*download is incomplete"):
        read_sat_checkpoint(folder)
    (folder / "latest").write_text("../../etc")
    with pytest.raises(ValueError, match="should name the iteration subfolder"):
        read_sat_checkpoint(folder)
    (folder / "latest").write_text("1")
    (folder / "1" / "mp_rank_00_model_states.pt").unlink()
    (folder / "1" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="has no mp_rank_00_model_states.pt.*zero_pp_rank_0"):
        read_sat_checkpoint(folder)


def test_model_parallel_checkpoints_are_refused(tmp_path, state):
    folder = write_sat_folder(tmp_path / "checkpoints", {"module": state})
    (folder / "1" / "mp_rank_01_model_states.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="several model-parallel ranks"):
        read_sat_checkpoint(folder)


def test_truncated_and_foreign_files_are_refused(tmp_path, state):
    torch.save({"module": state}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or still downloading"):
        read_sat_checkpoint(tmp_path / "truncated.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a checkpoint written by torch.save"):
        read_sat_checkpoint(tmp_path / "notes.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list"):
        read_sat_checkpoint(tmp_path / "list.pt")
    torch.save({"module": {"x": 1}}, tmp_path / "strays.pt")
    with pytest.raises(ValueError, match="non-tensor entries"):
        read_sat_checkpoint(tmp_path / "strays.pt")


class _Payload:
    """A pickle that runs code when loaded: it would create `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_pickle_that_needs_code_is_refused_and_never_runs(tmp_path, state):
    marker = tmp_path / "payload-ran"
    torch.save({"module": state, "hook": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"needs os\.makedirs to be unpickled.*refused without running it"):
        read_sat_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # torch's own weights-only load agrees, and runs nothing either
        torch.load(tmp_path / "evil.pt", weights_only=True)
    assert not marker.exists()


def test_checkpoints_are_found_under_model_folders_and_resolved_by_listed_name(tmp_path, state):
    root = tmp_path / "models"
    write_sat_folder(root / "DimensionX_360orbit", {"module": state})
    (root / "loose" / "1000").mkdir(parents=True)
    torch.save({"module": state}, root / "loose" / "1000" / "mp_rank_00_model_states.pt")
    write_sat_folder(root / ".DimensionX.part", {"module": state})  # still being written: hidden
    (root / "broken").mkdir()
    (root / "broken" / "latest").write_text("7")
    assert find_sat_checkpoints([root, tmp_path / "absent"]) == [
        "DimensionX_360orbit", "loose/1000/mp_rank_00_model_states.pt"]
    assert resolve_sat_checkpoint([root], "DimensionX_360orbit") == (root / "DimensionX_360orbit").resolve()
    for name in ("broken", "../models/DimensionX_360orbit", ".DimensionX.part"):
        with pytest.raises(ValueError, match="is not in"):
            resolve_sat_checkpoint([root], name)
