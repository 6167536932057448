"""Director training on the tiny model: the loss falls, the director pulls videos toward its clips at strength 1.0
in the pack's loader and in diffusers' load_lora_weights, a cancelled run resumes exactly, bad inputs are refused."""
import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from dimx_core.datasets.clips import read_clip, write_clip
from dimx_core.datasets.layout import Dataset, open_dataset
from dimx_core.directors import schedule
from dimx_core.directors.adapters import Director, DirectorControl, attach
from dimx_core.directors.formats import read_lora
from dimx_core.files import atomic_folder
from dimx_core.hooks import Hooks, Interrupted
from dimx_core.optional import MissingDependency
from dimx_core.recon.files import load_scene
from dimx_core.recon.render import CPU_RASTERIZER
from dimx_core.datasets.settings import SpatialSettings
from dimx_core.datasets.spatial import Scene, build_spatial_dataset
from dimx_core.speed.options import SpeedOptions
from dimx_core.training.checkpoint import CheckpointStore
from dimx_core.training.conditions import geometry_of, precompute
from dimx_core.training.options import TrainOptions
from dimx_core.training.trainer import evaluation_loss, train_director
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.runtime import Runtime
from dimx_core.video.sampling import generate
from dimx_core.video.solvers import make_scheduler
from harness.comfyhost import REPO

CPU = torch.device("cpu")
EXAMPLE_SCENE = REPO / "workflows" / "inputs" / "dimensionx_example_ball.ply"
FAST = dict(rank=8, alpha=8.0, validation=False, checkpoint_every=0, image_dropout=0.0, eval_every=2)


def place(module):
    return CPU


RUN = Runtime(place=place)  # nothing to offload on the CPU


@pytest.fixture(scope="module")
def parts(tiny_model_dir):
    return load_diffusers_folder(tiny_model_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
def dataset(parts, tmp_path_factory):
    """Two orbit_left clips of the example scene at the tiny model's size, through the spatial builder."""
    folder = tmp_path_factory.mktemp("data") / "orbit"
    settings = SpatialSettings(patterns=("orbit_left",), clips_per_pattern=2, templates="a textured ball, orbit left")
    with atomic_folder(folder) as partial:
        build_spatial_dataset(partial, [Scene("ball", load_scene(EXAMPLE_SCENE))], geometry_of(parts), settings,
                              rasterizer=CPU_RASTERIZER)
    return open_dataset(folder)


@pytest.fixture(scope="module")
def one_clip(dataset):
    return Dataset(dataset.folder, dataset.clips[:1], dataset.info)


@pytest.fixture(scope="module")
def trained(parts, one_clip, tmp_path_factory):
    """A director fitted to one clip for 60 steps (high learning rate: the tiny model must move in a test)."""
    out = tmp_path_factory.mktemp("director") / "orbit.safetensors"
    result = train_director(parts, one_clip, TrainOptions(learning_rate=1e-2, steps=60, weight_decay=0.0,
                                                          **dict(FAST, eval_every=20)),
                            out, RUN)
    return out, result


def test_training_lowers_the_fixed_noise_loss(trained):
    _, result = trained
    evals = dict(result.evals)
    assert sorted(evals) == [1, 20, 40, 60] and len(result.losses) == 60
    assert evals[60] < 0.85 * evals[1], result.evals
    assert evals[20] > evals[40] > evals[60]


def test_the_director_at_strength_one_moves_the_video_toward_its_clip(parts, one_clip, trained):
    path, _ = trained
    clip = read_clip(one_clip.clips[0].video)
    with torch.no_grad():
        target = parts.vae.encode(clip.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mean.permute(0, 2, 1, 3, 4)
    target = target * parts.spec.vae_scaling_factor
    settings = SamplerSettings(steps=8, guidance=1.0, seed=3)
    run = Runtime(place=place, preview_every=0, speed=SpeedOptions.off())
    base = generate(parts, VideoRequest(clip[0], one_clip.clips[0].caption, "", settings), run)
    directors = attach(parts.transformer, [Director("orbit", "S", 1.0, read_lora(path))], "the tiny model")
    steered = generate(parts, VideoRequest(clip[0], one_clip.clips[0].caption, "", settings, directors,
                                           schedule.constant(["orbit"], 8)), run)
    base_distance = (base.latents - target).pow(2).mean()
    steered_distance = (steered.latents - target).pow(2).mean()
    assert steered_distance < 0.8 * base_distance
    assert (steered.frames - clip).pow(2).mean() < (base.frames - clip).pow(2).mean()


def test_the_file_gives_the_trained_loss_at_strength_one_in_the_pack_and_in_diffusers(tiny_model_dir, one_clip,
                                                                                       tmp_path):
    """alpha 2 at rank 8 (scale 1/4): the file's metadata must carry it to both loaders."""
    import diffusers

    parts = load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    options = TrainOptions(learning_rate=1e-2, steps=4, **dict(FAST, alpha=2.0, eval_every=4))
    out = tmp_path / "d.safetensors"
    result = train_director(parts, one_clip, options, out, RUN)
    trained_loss = result.evals[-1][1]
    with safe_open(str(out), "pt") as handle:
        metadata = handle.metadata()
    assert json.loads(metadata["lora_adapter_metadata"])["transformer.lora_alpha"] == 2.0
    assert all(key.startswith("transformer.transformer_blocks.") and ".attn1." in key for key in load_file(out))

    conditions = precompute(parts, one_clip, RUN, variants=options.image_noise_variants, seed=options.seed,
                            low_memory=False)
    scheduler = make_scheduler("ddim", parts.scheduler_config)

    def loss(transformer):
        return evaluation_loss(transformer, scheduler, conditions, options, 0, CPU, torch.float32)

    base = loss(parts.transformer)
    director = Director("mine", "S", 1.0, read_lora(out))
    attach(parts.transformer, [director], "the tiny model")
    DirectorControl(parts.transformer, [director], schedule.constant(["mine"], 1)).apply(0)
    assert loss(parts.transformer) == pytest.approx(trained_loss, rel=1e-6) != pytest.approx(base, rel=1e-4)

    pipeline = diffusers.CogVideoXImageToVideoPipeline.from_pretrained(tiny_model_dir, dtype=torch.float32)
    pipeline.load_lora_weights(str(out))
    assert loss(pipeline.transformer) == pytest.approx(trained_loss, rel=1e-6)
    assert "alpha: 2.0" in read_lora(out).describe() and "4 steps at rank 8" in read_lora(out).describe()


def test_t5_and_the_vae_leave_before_the_first_step_and_stay_away(parts, one_clip, tmp_path):
    calls = []
    names = {id(parts.text_encoder): "text_encoder", id(parts.vae): "vae", id(parts.transformer): "transformer"}

    def recording_place(module):
        calls.append(("place", names[id(module)]))
        return CPU

    def recording_offload(module):
        calls.append(("offload", names[id(module)]))

    train_director(parts, one_clip, TrainOptions(learning_rate=1e-3, steps=3, **FAST), tmp_path / "o.safetensors",
                   Runtime(place=recording_place, offload=recording_offload))
    assert calls == [("place", "text_encoder"), ("offload", "text_encoder"), ("place", "vae"), ("offload", "vae"),
                     ("place", "transformer")]


def stop_after(step: int, total: int) -> Hooks:
    """Cancel once training has reported `step` of `total` (the clip-encoding progress has another total)."""
    asked = []

    def progress(done, count, preview):
        if (done, count) == (step, total):
            asked.append(True)

    return Hooks(progress=progress, should_stop=lambda: bool(asked))


def test_an_interrupted_then_resumed_run_equals_an_uninterrupted_one(parts, dataset, tmp_path):
    options = TrainOptions(learning_rate=1e-3, steps=6, batch_size=1, **dict(FAST, checkpoint_every=2))
    whole = train_director(parts, dataset, options, tmp_path / "whole.safetensors", RUN,
                           checkpoints=tmp_path / "whole")
    with pytest.raises(Interrupted):
        train_director(parts, dataset, options, tmp_path / "split.safetensors",
                       Runtime(place=place, hooks=stop_after(3, 6)), checkpoints=tmp_path / "split")
    assert not (tmp_path / "split.safetensors").exists()
    assert CheckpointStore(tmp_path / "split").step_saved() == 3   # the cancelled step, not the periodic step 2
    resumed = train_director(parts, dataset, options, tmp_path / "split.safetensors", RUN,
                             checkpoints=tmp_path / "split")
    assert resumed.resumed_from == 3 and resumed.losses == whole.losses and resumed.evals == whole.evals
    a, b = load_file(tmp_path / "whole.safetensors"), load_file(tmp_path / "split.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert not any(name.startswith(".") for name in (p.name for p in tmp_path.rglob("*")))  # nothing half-written


def test_a_checkpoint_of_other_options_is_refused_by_name(parts, one_clip, tmp_path):
    options = TrainOptions(learning_rate=1e-3, steps=2, **FAST)
    with pytest.raises(Interrupted):
        train_director(parts, one_clip, options, tmp_path / "a.safetensors",
                       Runtime(place=place, hooks=stop_after(1, 2)), checkpoints=tmp_path / "run")
    with pytest.raises(ValueError, match="belongs to another run"):
        train_director(parts, one_clip, options.replace(learning_rate=2e-3), tmp_path / "a.safetensors", RUN,
                       checkpoints=tmp_path / "run")


def test_validation_videos_come_at_the_chosen_steps_and_the_last(parts, one_clip, tmp_path):
    options = TrainOptions(learning_rate=1e-3, steps=3, **dict(FAST, validation=True), validation_steps=(1,),
                           validation_inference_steps=2)
    result = train_director(parts, one_clip, options, tmp_path / "v.safetensors", RUN)
    assert [step for step, _ in result.validations] == [1, 3]
    assert all(frames.shape == (17, 96, 144, 3) for _, frames in result.validations)
    assert not torch.equal(result.validations[0][1], result.validations[1][1])  # the director changed in between


def test_early_stop_ends_the_run_when_the_evaluation_stops_improving(parts, one_clip, tmp_path):
    """At a learning rate of 1e-30 the weights do not move: the second evaluation is no better, patience 1 stops."""
    options = TrainOptions(learning_rate=1e-30, steps=20, **dict(FAST, eval_every=1), early_stop_patience=1)
    result = train_director(parts, one_clip, options, tmp_path / "e.safetensors", RUN)
    assert result.stopped_early and result.steps_done == 2 and (tmp_path / "e.safetensors").is_file()
    assert "stopped early" in result.describe()


def test_eight_bit_adamw_trains_or_says_what_to_install(parts, one_clip, tmp_path, monkeypatch):
    options = TrainOptions(learning_rate=1e-3, steps=2, optimizer="adamw8bit", **FAST)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependency, match="pip install bitsandbytes"):
            train_director(parts, one_clip, options, tmp_path / "b.safetensors", RUN)
        return
    result = train_director(parts, one_clip, options, tmp_path / "b.safetensors", RUN)
    assert result.steps_done == 2 and (tmp_path / "b.safetensors").is_file()
    monkeypatch.setitem(__import__("sys").modules, "bitsandbytes", None)
    with pytest.raises(MissingDependency, match="8-bit AdamW .*pip install bitsandbytes"):
        train_director(parts, one_clip, options, tmp_path / "c.safetensors", RUN)
    assert not (tmp_path / "c.safetensors").exists()
    assert not [name for name, _ in parts.transformer.named_parameters() if "dimx_training" in name]  # left clean
    assert not parts.transformer.gradient_checkpointing


@pytest.mark.parametrize("change, message", [
    (dict(rank=0), "rank must be a whole number >= 1"),
    (dict(kind="x"), "kind must be 's'"),
    (dict(learning_rate=-1.0), "learning_rate must be a positive number"),
    (dict(optimizer="sgd"), "optimizer must be one of adamw, adamw8bit"),
    (dict(validation_steps=(0, 5000)), r"validation_steps \[0, 5000\] are outside the run's steps 1..3000"),
    (dict(early_stop_patience=2, eval_every=0), "early_stop_patience needs eval_every"),
])
def test_bad_options_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        TrainOptions(**change)


def test_a_clip_of_the_wrong_length_or_size_is_refused_and_nothing_is_written(parts, dataset, tmp_path):
    for name, frames in (("short", read_clip(dataset.clips[0].video)[:9]),
                         ("small", torch.rand(17, 64, 96, 3))):
        folder = tmp_path / name
        shutil.copytree(dataset.folder, folder)
        write_clip(folder / "videos" / "00001.mp4", frames, 8.0)
        expected = "9 frames of 144x96" if name == "short" else "17 frames of 96x64"
        with pytest.raises(ValueError, match=f"clip '00001.mp4' .* has {expected}, but this model needs 17 frames "
                                             "of 144x96. Rebuild the dataset"):
            train_director(parts, open_dataset(folder), TrainOptions(steps=1, **FAST), folder / "out.safetensors",
                           RUN, checkpoints=folder / "checkpoints")
        assert not (folder / "out.safetensors").exists() and not (folder / "checkpoints").exists()


def test_an_empty_or_unreadable_clip_is_refused_by_name(parts, dataset, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(dataset.folder, folder)
    (folder / "videos" / "00001.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="video '.*00001.mp4' cannot be read|00001.mp4' holds no frames"):
        train_director(parts, open_dataset(folder), TrainOptions(steps=1, **FAST), folder / "out.safetensors",
                       RUN)
    assert not (folder / "out.safetensors").exists()


def test_a_model_folder_that_is_not_image_to_video_is_refused(tiny_model_dir, dataset, tmp_path, capsys):
    from dimx_core.cli import main

    folder = tmp_path / "t2v"
    shutil.copytree(tiny_model_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps(dict(index, _class_name="CogVideoXPipeline")))
    config = json.loads((folder / "transformer" / "config.json").read_text())  # the layout is read from the weights'
    (folder / "transformer" / "config.json").write_text(json.dumps(dict(config, in_channels=16)))  # config
    out = tmp_path / "x.safetensors"
    code = main(["train-director", "--model", str(folder), "--dataset", str(dataset.folder), "--kind", "s",
                 "--out", str(out), "--steps", "1"])
    assert code == 2 and "looks like a text-to-video checkpoint" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [folder]


@pytest.fixture(scope="module")
def inp_parts(tmp_path_factory):
    from dimx_core.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("inp") / "m", version="1.0-inp")
    return load_diffusers_folder(folder, dtype=torch.float32)


def test_an_inp_base_conditions_on_each_clips_first_and_last_frame_only(inp_parts, one_clip, monkeypatch):
    """The start/end-frame conditioning of training is inference's (same mask), the in-between frames are never
    seen, and the last frame speaks through the last latent frames only (the causal VAE)."""
    import dataclasses

    from dimx_core.training import conditions as conditions_module
    from dimx_core.video.conditioning import conditioning_latents

    clip = read_clip(one_clip.clips[0].video)
    middle_replaced, last_replaced = clip.clone(), clip.clone()
    middle_replaced[1:-1] = torch.rand(middle_replaced[1:-1].shape, generator=torch.Generator().manual_seed(0))
    last_replaced[-1] = 1.0 - clip[-1]

    def images_of(frames):
        monkeypatch.setattr(conditions_module, "read_clip", lambda path: frames)
        return precompute(inp_parts, one_clip, RUN, variants=2, seed=0, low_memory=False)

    given = images_of(clip)
    images = given.clips[0].images
    assert images.shape == (2, 5, 17, 12, 18)  # per variant: mask (1) + masked-video latents (16), 5 latent frames
    pixels = clip.permute(3, 0, 1, 2)[None] * 2 - 1
    reference = conditioning_latents(inp_parts.vae, dataclasses.replace(inp_parts.spec, reference_noise=0.0),
                                     pixels[:, :, 0], pixels[:, :, -1], 5, torch.Generator(), torch.float32)
    assert torch.equal(images[:, :, :1], reference[:, :, :1].expand(2, -1, -1, -1, -1))
    assert torch.equal(images_of(middle_replaced).clips[0].images, images)
    change = (images_of(last_replaced).clips[0].images - images).abs().mean(dim=(0, 2, 3, 4))
    assert change[:3].max() == 0 and change[-1] > 3 * change[3]  # as at inference (test_interpolation.py)
    assert given.dropped.shape == (5, 17, 12, 18) and given.dropped[:, 0].abs().max() == 0  # nothing given
    assert torch.equal(given.validation_end_image, clip[-1])


def test_an_inp_base_trains_a_sparse_view_s_director(inp_parts, one_clip, tmp_path):
    said = []
    result = train_director(inp_parts, one_clip, TrainOptions(learning_rate=1e-2, steps=20, weight_decay=0.0,
                                                              **dict(FAST, eval_every=10, image_dropout=0.05,
                                                                     validation=True, validation_inference_steps=2)),
                            tmp_path / "sparse.safetensors", RUN, say=said.append)
    evals = dict(result.evals)
    assert evals[20] < 0.9 * evals[1], result.evals
    assert "first and last frames are given; the paper stops sparse-view S-Directors at 1000 steps" in said[0]
    (step, frames), = result.validations  # the validation video joins the clip's first and last frame
    assert step == 20 and frames.shape == (17, 96, 144, 3)
    assert read_lora(result.path).describe()


def test_a_bf16_model_trains_renders_its_validation_video_and_writes_the_fp32_weights(tiny_model_dir, one_clip,
                                                                                       tmp_path):
    """On a bf16 model the adapter's fp32 weights are read as bf16 (training/lora.py): the validation video and the
    file go through the same cast, and the file keeps what the optimizer made, in the file's dtype."""
    parts = load_diffusers_folder(tiny_model_dir, dtype=torch.bfloat16)
    out = tmp_path / "bf16.safetensors"
    result = train_director(parts, one_clip, TrainOptions(steps=2, **dict(FAST, validation=True,
                                                                          validation_inference_steps=2)), out, RUN)
    assert [step for step, _ in result.validations] == [2]
    assert torch.isfinite(result.validations[0][1]).all()
    tensors = load_file(out)
    assert len(tensors) == 4 * 2 * 2 and all(".lora_A.weight" in k or ".lora_B.weight" in k for k in tensors)
    assert any(value.abs().max() > 0 for key, value in tensors.items() if "lora_B" in key)  # B moved from zero
    assert len(read_lora(out).targets) == 4 * 2
    assert not any("lora" in name for name, _ in parts.transformer.named_parameters())  # adapter removed after
