"""`dimx dataset spatial|temporal` and `dimx train-director` end to end on the tiny model, and `dimx lora-info` on
the result."""
import torch

from dimx_core.cli import main
from dimx_core.datasets.clips import write_clip
from dimx_core.datasets.layout import open_dataset
from harness.comfyhost import REPO
from tests.synthetic_videos import moving_camera, still_camera

SCENE = REPO / "workflows" / "inputs" / "dimensionx_example_ball.ply"


def test_dataset_spatial_then_train_director_then_resume_then_lora_info(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "orbit"
    assert main(["dataset", "spatial", "--scene", str(SCENE), "--patterns", "orbit_left", "--clips", "1",
                 "--model", str(tiny_model_dir), "--captions", "a ball, {motion}", "--out", str(data)]) == 0
    assert f"spatial-variant dataset, 1 clips (0 candidates rejected): {data}" in capsys.readouterr().out
    assert open_dataset(data).info["width"] == 144

    out = tmp_path / "director.safetensors"
    command = ["train-director", "--model", str(tiny_model_dir), "--dataset", str(data), "--kind", "t",
               "--rank", "4", "--steps", "2", "--eval-every", "1", "--checkpoint-every", "1",
               "--validation-inference-steps", "2", "--out", str(out)]
    assert main(command) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and "step 2 of 2, loss" in captured.err
    assert "note: the dataset was built as spatial-variant but a T-Director was trained on it" in captured.err
    for name in ("director.loss.png", "director.validation_step00002.mp4", "director.checkpoints"):
        assert (tmp_path / name).exists(), name

    assert main(command[:-2] + ["--steps", "3", "--resume", "--out", str(out)]) == 0
    assert "resuming at step 2" in capsys.readouterr().err

    assert main(["lora-info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "rank: 4" in info and "alpha: 1.0" in info and "W + 0.25·B·A" in info
    assert "trained: T-Director (object motion), 3 steps at rank 4" in info

    assert main(["dataset", "spatial", "--scene", str(SCENE), "--patterns", "orbit_left", "--out", str(data)]) == 2
    assert "already exists; choose a new folder name" in capsys.readouterr().err


def test_dataset_temporal_keeps_the_still_clip(tmp_path, capsys):
    videos = tmp_path / "videos"
    write_clip(videos / "still.mp4", torch.from_numpy(still_camera("blobs", 2.0, 17, 144, 96, 3)) / 255.0, 8.0)
    write_clip(videos / "pan.mp4", torch.from_numpy(moving_camera("blobs", 2.0, 17, 144, 96, 4, "pan")) / 255.0, 8.0)
    assert main(["dataset", "temporal", "--videos", str(videos), "--width", "144", "--height", "96", "--frames", "17",
                 "--frame-stride", "1", "--caption", "{video}: something moves", "--out", str(tmp_path / "t")]) == 0
    captured = capsys.readouterr()
    assert "temporal-variant dataset, 1 clips (1 candidates rejected)" in captured.out
    assert "camera moves" in captured.err
    assert [c.caption for c in open_dataset(tmp_path / "t").clips] == ["still: something moves"]
