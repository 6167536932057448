"""Convert SAT Checkpoint, executed directly inside a real ComfyUI 0.3.75 process (CPU)."""
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sat_writers import deepspeed_record, sat_transformer_state, write_sat_folder  # noqa: E402

LAYOUT_145 = dict(latent_frames=37, latent_height=4, latent_width=6)


@pytest.fixture(scope="module")
def models(pack, tiny_model_dir, tmp_path_factory):
    """models/dimensionx with the tiny base and a tiny 360-degree SAT checkpoint in SAT's folder layout."""
    import folder_paths

    root = tmp_path_factory.mktemp("convert-models") / "dimensionx"
    shutil.copytree(tiny_model_dir, root / "tiny-i2v")
    state = sat_transformer_state(lora_rank=4, dtype=torch.bfloat16, **LAYOUT_145)
    write_sat_folder(root / "DimensionX_360orbit", deepspeed_record(state))
    folder_paths.add_model_folder_path("dimensionx", str(root), is_default=True)
    return root


def test_checkpoint_converts_into_a_model_that_load_video_model_lists(node_classes, models):
    node = node_classes["DimensionXConvertSATCheckpoint"]
    inputs = {item.id: item for item in node.GET_SCHEMA().inputs}
    assert "DimensionX_360orbit" in inputs["checkpoint"].options and "tiny-i2v" in inputs["base"].options
    output = node.execute("DimensionX_360orbit", "tiny-i2v", "DimensionX-360", "bf16")
    name, info = output.result
    assert name == "DimensionX-360" and (models / name / "vae").is_symlink()
    assert "48x32, 145 frames" in info and "merged the LoRA of 4 layers" in info
    assert output.ui.as_dict()["text"] == (info,)
    loader = node_classes["DimensionXLoadVideoModel"]
    assert name in {item.id: item for item in loader.GET_SCHEMA().inputs}["model"].options
    model, loaded = loader.execute(name, "fp32").result
    assert model.parts.spec.frames == 145 and "48x32, 145 frames" in loaded


def test_existing_names_and_paths_are_refused(node_classes, models):
    node = node_classes["DimensionXConvertSATCheckpoint"]
    with pytest.raises(FileExistsError, match="already exists"):
        node.execute("DimensionX_360orbit", "tiny-i2v", "tiny-i2v", "bf16")
    for name in ("../outside", ".hidden", "a/b", ""):
        with pytest.raises(ValueError, match="use letters, digits"):
            node.execute("DimensionX_360orbit", "tiny-i2v", name, "bf16")
    with pytest.raises(ValueError, match="SAT checkpoint 'elsewhere' is not in"):
        node.execute("elsewhere", "tiny-i2v", "x", "bf16")
    assert not (models.parent / "outside").exists() and not any(p.name.startswith(".") for p in models.iterdir())
