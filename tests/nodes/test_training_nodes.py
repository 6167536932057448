"""The dataset and training nodes inside a real ComfyUI (CPU, inference mode as ComfyUI's executor runs nodes):
datasets land in output/, the director in models/loras where Load Director LoRA reads it, Cancel keeps a
checkpoint that the next run resumes, and nothing is half-written."""
import shutil

import pytest
import torch

from dimx_core.datasets.clips import write_clip
from harness.comfyhost import REPO
from tests.nodes.conftest import comfy_directories
from tests.synthetic_videos import moving_camera, still_camera

SCENE = REPO / "workflows" / "inputs" / "dimensionx_example_ball.ply"


@pytest.fixture(scope="module")
def comfy(pack, tiny_model_dir, tmp_path_factory):
    """ComfyUI's folders in a scratch directory: the tiny model, an empty loras folder, input with the example
    scene and two videos, output and user folders."""
    import folder_paths

    root = tmp_path_factory.mktemp("comfy")
    shutil.copytree(tiny_model_dir, root / "models" / "dimensionx" / "tiny-i2v")
    (root / "models" / "loras").mkdir(parents=True)
    for folder in ("dimensionx", "loras"):
        folder_paths.add_model_folder_path(folder, str(root / "models" / folder), is_default=True)
    with comfy_directories(root, ("output", "input", "user", "temp")):
        shutil.copy(SCENE, root / "input")
        shutil.copy(SCENE.with_name(SCENE.stem + ".transforms.json"), root / "input")
        for name, frames in (("still", still_camera("fine", 2.0, 20, 144, 96, 1)),
                             ("pan", moving_camera("fine", 2.0, 20, 144, 96, 2, "pan"))):
            write_clip(root / "input" / "clips" / f"{name}.mp4", torch.from_numpy(frames).float() / 255, 8.0)
        (root / "input" / "clips" / "still.txt").write_text("a ball rolls across a table")
        yield root


@pytest.fixture(scope="module")
def model(comfy, node_classes):
    with torch.inference_mode():
        return node_classes["DimensionXLoadVideoModel"].execute("tiny-i2v", "fp32").result[0]


@pytest.fixture(scope="module")
def spatial(comfy, node_classes, model):
    with torch.inference_mode():
        scene = node_classes["DimensionXLoadGaussians"].execute("dimensionx_example_ball.ply").result[0]
        return node_classes["DimensionXBuildSpatialDataset"].execute(
            model=model, gaussians=scene, patterns="orbit_left, pedestal_up", clips_per_pattern=1, angle_deg=30.0,
            distance_fraction=0.25, easing="linear", captions="orbit_left: a ball, the camera circles it",
            scene_name="ball", clearance=0.15, box_margin=0.1, opacity_threshold=0.5, attempts=3, seed=0,
            filename_prefix="DimensionX/datasets/ball").result


def train(node_classes, model, dataset, **overrides):
    args = dict(model=model, dataset=dataset, lora_name="dimx-test/orbit", kind="S", rank=4, alpha=4.0,
                learning_rate=1e-3, steps=2, batch_size=1, optimizer="adamw", gradient_checkpointing=True,
                low_memory=False, checkpoint_every=0, eval_every=1, early_stop_patience=0, validation_steps="",
                validation_inference_steps=2, seed=0, resume=True, overwrite=False)
    args.update(overrides)
    with torch.inference_mode():
        return node_classes["DimensionXTrainDirectorLoRA"].execute(**args).result


def test_build_spatial_dataset_writes_a_dataset_and_says_which_motion_did_not_fit(comfy, spatial):
    dataset, preview, report = spatial
    assert dataset.folder.parent == comfy / "output" / "DimensionX" / "datasets"
    assert [c.caption for c in dataset.clips] == ["a ball, the camera circles it"]
    assert preview.shape == (1, 96, 3 * 144, 3)
    assert "too small for pedestal_up" in report and "leaves the camera region" in report
    assert not [p for p in dataset.folder.parent.iterdir() if p.name.startswith(".")]


def test_curate_temporal_dataset_keeps_the_still_camera(comfy, node_classes, model):
    schema = node_classes["DimensionXCurateTemporalDataset"].GET_SCHEMA()
    assert "clips" in next(i for i in schema.inputs if i.id == "videos").options
    with torch.inference_mode():
        dataset, preview, report = node_classes["DimensionXCurateTemporalDataset"].execute(
            model=model, videos="clips", still_px=0.5, min_static_share=0.6, max_background_flow=0.3,
            min_texture_share=0.05, frame_stride=1, max_clips_per_video=0, caption="",
            filename_prefix="DimensionX/datasets/mine").result
    assert [c.caption for c in dataset.clips] == ["a ball rolls across a table"]
    assert "pan.mp4" in report and "camera moves" in report and preview.shape[0] == 1


def test_train_writes_a_director_that_load_director_lora_reads(comfy, node_classes, model, spatial):
    name, curve, validation, report = train(node_classes, model, spatial[0])
    assert name == "dimx-test/orbit.safetensors" and (comfy / "models" / "loras" / name).is_file()
    assert curve.shape == (1, 360, 640, 3) and validation.shape == (17, 96, 144, 3)
    assert "2 steps" in report and "fixed-noise evaluation loss" in report
    assert list((comfy / "output" / "DimensionX" / "training").glob("orbit_step00002_*.mp4"))
    with torch.inference_mode():
        chain = node_classes["DimensionXLoadDirectorLoRA"].execute(name, "S", "mine", 1.0).result[0]
    assert "trained: S-Director (camera motion), 2 steps at rank 4" in chain[0].lora.describe()
    with pytest.raises(FileExistsError, match="choose another name or turn on overwrite"):
        train(node_classes, model, spatial[0])


def test_cancel_keeps_a_checkpoint_and_the_next_run_resumes(comfy, node_classes, model, spatial, monkeypatch):
    import comfy.model_management as model_management

    calls = []
    # one question per encoded clip, then one per step: the third question comes after training step 2
    monkeypatch.setattr(model_management, "processing_interrupted", lambda: calls.append(1) or len(calls) >= 3)
    with pytest.raises(model_management.InterruptProcessingException):  # seed 1: not the run of the test above
        train(node_classes, model, spatial[0], lora_name="dimx-test/cancelled", steps=4, seed=1)
    assert not (comfy / "models" / "loras" / "dimx-test" / "cancelled.safetensors").exists()
    assert len(list((comfy / "user" / "dimensionx" / "training").glob("*/checkpoint.pt"))) >= 1
    monkeypatch.setattr(model_management, "processing_interrupted", lambda: False)
    name, _, _, report = train(node_classes, model, spatial[0], lora_name="dimx-test/cancelled", steps=4, seed=1)
    assert "resumed at step 2" in report and (comfy / "models" / "loras" / name).is_file()


def test_train_refuses_a_missing_dataset_and_a_name_outside_loras(comfy, node_classes, model, spatial):
    with pytest.raises(ValueError, match="connect a dataset"):
        train(node_classes, model, None)
    with pytest.raises(ValueError, match="is not a folder inside ComfyUI's input or output"):
        train(node_classes, model, None, dataset_folder="../../etc")
    with pytest.raises(ValueError, match="lora_name '../escape.safetensors' leads outside"):
        train(node_classes, model, spatial[0], lora_name="../escape")
    with pytest.raises(ValueError, match="lora_name: '.hidden' is not a file name inside ComfyUI's 'loras' folder"):
        train(node_classes, model, spatial[0], lora_name=".hidden")
    with pytest.raises(ValueError, match="rank must be a whole number >= 1"):
        train(node_classes, model, spatial[0], rank=0, lora_name="dimx-test/rank0")
    assert not (comfy / "models" / "loras" / "dimx-test" / "rank0.safetensors").exists()
