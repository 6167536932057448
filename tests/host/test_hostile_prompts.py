"""Careless and hostile prompts against a live ComfyUI (0.3.75, or COMFYUI_PATH), as an API client sends them:
each is refused or fails with its reason, and the server keeps answering and running good prompts."""
import json
import os

import pytest
from safetensors.torch import load_file, save_file

from dimx_core.camera import plan
from dimx_core.camera.formats import write_colmap_text, write_transforms_json
from harness.assets import TINY_LORAS, TINY_SINGLE_FILES
from harness.comfyhost import ComfyError

PLANNER = {"pattern": "dolly_in", "frames": 9, "magnitude": 0.5, "radius": 2.0, "elevation": 0.0, "fov_deg": 60.0,
           "width": 720, "height": 480, "easing": "linear"}
ARTICULATED = {"pattern": "orbit_left", "total": 120.0, "max_clip": 30.0, "frames_per_clip": 9, "radius": 2.0,
               "elevation": 0.0, "fov_deg": 60.0, "width": 720, "height": 480}
S_DIRECTOR = next(name for name, (kind, _) in TINY_LORAS.items() if kind == "s")


def _single_file_model(**overrides) -> dict:
    return {"class_type": "DimensionXLoadVideoModel",
            "inputs": {"model": "(single files below)", "precision": "fp32",
                       "transformer_file": TINY_SINGLE_FILES["diffusion_models"], "vae_file": TINY_SINGLE_FILES["vae"],
                       "text_encoder_file": TINY_SINGLE_FILES["text_encoders"]} | overrides}


def _export(prefix: str, trajectory=("1", 0), file_format="transforms.json") -> dict:
    return {"class_type": "DimensionXTrajectoryExport",
            "inputs": {"trajectory": list(trajectory), "format": file_format, "filename_prefix": prefix}}


def _good_prompt(prefix: str) -> dict:
    return {"1": {"class_type": "DimensionXTrajectoryPlanner", "inputs": dict(PLANNER)}, "2": _export(prefix)}


def _load_trajectory(file: str) -> dict:
    return {"1": {"class_type": "DimensionXTrajectoryLoad", "inputs": {"file": file}}, "2": _export("host_bad/x")}


def _load_lora(name: str, strength=1.0) -> dict:
    """A director chain, then a sampler on the tiny single-file model, then a preview: the LoRA meets the model."""
    return {"1": _single_file_model(),
            "2": {"class_type": "LoadImage", "inputs": {"image": "dimx_example.png"}},
            "3": {"class_type": "DimensionXLoadDirectorLoRA",
                  "inputs": {"lora_name": name, "role": "S", "name": "orbit_left", "strength": strength}},
            "4": {"class_type": "DimensionXDirectorSampler",
                  "inputs": {"model": ["1", 0], "image": ["2", 0], "prompt": "a house", "negative_prompt": "",
                             "steps": 1, "guidance": 6.0, "use_dynamic_cfg": True, "scheduler": "ddim", "seed": 0,
                             "directors": ["3", 0]}},
            "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}}


def test_single_file_mode_runs_on_the_real_host(comfy):
    """0.3.75's comfy.text_encoders is a namespace package: the tokenizer lookup failed before opening any file."""
    outputs = comfy.run(_load_lora(S_DIRECTOR))
    assert len(outputs["5"]["images"]) == 17  # the tiny model's 17 frames, through ComfyUI's own T5 tokenizer


@pytest.mark.parametrize("node, problem", [
    (_single_file_model(precision="fp64"), "precision: 'fp64' is not one of its options"),
    ({"class_type": "DimensionXPreviewGaussians",
      "inputs": {"gaussians": ["2", 0], "path": "bogus", "frames": 8, "width": 64, "height": 64}},
     "path: 'bogus' is not one of its options ('turntable', 'trajectory')"),
], ids=["precision-fp64", "path-bogus"])
def test_the_server_refuses_combo_values_outside_their_options(comfy, node, problem):
    prompt = {"1": node, "2": {"class_type": "DimensionXLoadGaussians",
                               "inputs": {"scene": "dimensionx_example_ball.ply"}}}
    if node["class_type"] == "DimensionXLoadVideoModel":
        prompt = _load_lora(S_DIRECTOR) | {"1": node}
    with pytest.raises(ComfyError, match="refused") as refused:
        comfy.queue(prompt)
    assert problem in str(refused.value)


def _lora_for_another_model(comfy) -> str:
    """A copy of a tiny director whose metadata names CogVideoX 1.5 (same widths as 1.0: it fits by shape)."""
    loras = comfy.base / "models" / "loras"
    name = "dimx-hostile/made_for_15.safetensors"
    (loras / name).parent.mkdir(exist_ok=True)
    save_file(load_file(loras / S_DIRECTOR), str(loras / name), metadata={"base_model": "THUDM/CogVideoX1.5-5B-I2V"})
    return name


def test_a_bad_prompt_of_every_kind_in_a_row_leaves_the_server_answering_and_running(comfy):
    inputs = comfy.base / "input"
    outside = comfy.base / "outside"
    outside.mkdir(exist_ok=True)
    write_transforms_json(outside / "transforms.json", plan("pan_left", 3, 20.0))
    (inputs / "leak_transforms.json").symlink_to(outside / "transforms.json")
    (inputs / "leak.ply").symlink_to(comfy.base / "comfyui.log")
    no_focal = json.loads((outside / "transforms.json").read_text())
    del no_focal["fl_x"], no_focal["frames"][0]["fl_x"]
    (inputs / "hostile").mkdir(exist_ok=True)
    (inputs / "hostile" / "no_focal_transforms.json").write_text(json.dumps(no_focal))
    write_colmap_text(inputs / "hostile" / "scan", plan("orbit_left", 6, 30.0))
    images = inputs / "hostile" / "scan" / "images.txt"
    images.write_text("\n".join(line for line in images.read_text().splitlines() if line.strip()) + "\n")
    other_model_lora = _lora_for_another_model(comfy)
    try:
        refused = [  # refused when queued, before anything runs: (prompt, what the server must say)
            (_load_lora(S_DIRECTOR) | {"1": _single_file_model(precision="fp64")}, "precision: 'fp64' is not one"),
            (_load_lora(S_DIRECTOR, strength=float("nan")), "strength must be a finite number, got nan"),
            (_load_trajectory("leak_transforms.json"), "file: 'leak_transforms.json' is not one of its options"),
            (_load_trajectory("../outside/transforms.json"), "is not one of its options"),
            ({"1": {"class_type": "DimensionXLoadGaussians", "inputs": {"scene": "leak.ply"}},
              "2": {"class_type": "DimensionXSaveGaussians",
                    "inputs": {"gaussians": ["1", 0], "filename_prefix": "x", "splat": False}}},
             "scene: 'leak.ply' is not one of its options"),
            (_good_prompt("host_bad/nul\x00name"), "filename_prefix contains a NUL character"),
        ]
        for prompt, reason in refused:
            with pytest.raises(ComfyError, match="refused") as error:
                comfy.queue(prompt)
            assert reason in str(error.value), str(error.value)
        failing = [  # run and fail with the reason, the queue moving on
            ({"1": {"class_type": "DimensionXArticulatedPathPlanner",
                    "inputs": ARTICULATED | {"total": 3600.0, "max_clip": 0.001}}, "2": _export("host_bad/clips")},
             "makes 3600000 clips, but at most 360"),
            (_load_trajectory("hostile/no_focal_transforms.json"), "frame 0 has no focal length: give 'fl_x'"),
            (_good_prompt(""), "filename_prefix '' gives the file name '.'"),
            (_load_lora(other_model_lora), "it was made for CogVideoX 1.5 (its metadata 'base_model' names"),
        ]
        for prompt, reason in failing:
            with pytest.raises(ComfyError, match="failed") as error:
                comfy.run(prompt, timeout=120)
            assert reason in str(error.value), str(error.value)
        assert "DimensionXTrajectoryPlanner" in comfy.object_info()  # still answering
        outputs = comfy.run(_load_trajectory("hostile/scan"))  # COLMAP without POINTS2D lines: every camera read
        assert outputs["1"]["text"][0].startswith("6 cameras, 720x480")
        outputs = comfy.run(_good_prompt("host_good/after"))
        folder = outputs["2"]["text"][0].split(" written to ")[1]
        assert oct(os.stat(folder).st_mode & 0o777) == oct(0o777 & ~_umask())
        back = json.loads((comfy.base / "output" / folder / "transforms.json").read_text())
        assert back["frames"][-1]["transform_matrix"][2][3] == pytest.approx(0.5)
        assert not [p for p in (comfy.base / "output").rglob("*") if p.name.startswith(".")]  # nothing half-written
    finally:
        (comfy.base / "models" / "loras" / other_model_lora).unlink(missing_ok=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
