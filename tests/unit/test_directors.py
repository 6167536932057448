"""Director LoRAs: every file format gives the trained effect; schedules switch adapters per step."""
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from dimx_core.directors import schedule
from dimx_core.directors.adapters import Director, DirectorControl, attach, lora_layers
from dimx_core.directors.formats import read_lora
from dimx_core.speed.options import SpeedOptions
from dimx_core.tiny import TINY_LORA_RANK, build_tiny_lora
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.runtime import Runtime
from dimx_core.video.sampling import generate
from tests import lora_writers

CPU = torch.device("cpu")
LAYER = "transformer_blocks.1.attn1.to_v"


@pytest.fixture
def parts(tiny_model_dir):
    return load_diffusers_folder(tiny_model_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
def release(tiny_model_dir, tmp_path_factory):
    path = build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("lora") / "orbit_left.safetensors", "s", seed=4)
    return load_file(path)


def effective_weight(transformer, module_name):
    layer = dict(transformer.named_modules())[module_name]
    base = getattr(layer, "base_layer", layer)
    identity = torch.eye(base.in_features)
    with torch.no_grad():
        return (layer(identity) - base.bias).T


def hand_merge(parts, release, module, strength=1.0, alpha=1.0):
    a = release[f"transformer.{module}.lora_A.weight"].float()
    b = release[f"transformer.{module}.lora_B.weight"].float()
    return parts.transformer.get_submodule(module).weight + strength * alpha / a.shape[0] * (b @ a)


def attach_file(parts, path, strength=1.0, name="d"):
    lora = read_lora(path)
    director = Director(name=name, role="S", strength=strength, lora=lora)
    attach(parts.transformer, [director], "the tiny model")
    control = DirectorControl(parts.transformer, [director], schedule.constant([name], 1))
    control.apply(0)
    return lora


def test_release_layout_means_one_over_rank(parts, release, tmp_path):
    expected = hand_merge(parts, release, LAYER)
    lora = attach_file(parts, lora_writers.write(tmp_path / "r.safetensors", release))
    assert lora.format.startswith("diffusers/PEFT keys (with 'transformer.' prefix, no alpha")
    assert torch.allclose(effective_weight(parts.transformer, LAYER), expected, atol=1e-5)
    delta = expected - parts.transformer.get_submodule(LAYER).base_layer.weight
    assert delta.abs().max() > 0.01  # the director really changes the layer


@pytest.mark.parametrize("writer, fmt", [
    (lambda r: lora_writers.diffusers(r, prefix=False), "diffusers/PEFT keys (without 'transformer.' prefix, no"),
    (lambda r: lora_writers.diffusers(r, alpha=1.0), "diffusers/PEFT keys (with 'transformer.' prefix, with alpha"),
    (lambda r: lora_writers.diffusers(r, alpha=TINY_LORA_RANK / 2), "with alpha"),
    (lambda r: lora_writers.kohya(r, alpha=3.0), "kohya-style"),
    (lora_writers.comfy_native, "ComfyUI native keys"),
    (lora_writers.sat, "SAT export"),
])
def test_every_format_gives_the_same_effective_weights(parts, release, tmp_path, writer, fmt):
    path = lora_writers.write(tmp_path / "f.safetensors", writer(release))
    lora = attach_file(parts, path, strength=0.7)
    assert fmt in lora.format
    for module in (LAYER, "transformer_blocks.0.attn1.to_out.0", "transformer_blocks.0.attn1.to_q"):
        assert torch.allclose(effective_weight(parts.transformer, module), hand_merge(parts, release, module, 0.7),
                              atol=1e-5), module


def test_pickles_load_weights_only(parts, release, tmp_path):
    path = tmp_path / "director.pt"
    torch.save({k: v.clone() for k, v in release.items()}, path)
    attach_file(parts, path)
    assert torch.allclose(effective_weight(parts.transformer, LAYER), hand_merge(parts, release, LAYER), atol=1e-5)


def test_a_pickle_that_needs_code_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"weights": torch.zeros(1), "callback": print}, path)
    with pytest.raises(ValueError, match="weights-only"):
        read_lora(path)


def test_truncated_and_foreign_files_are_named(release, tmp_path, parts):
    good = lora_writers.write(tmp_path / "good.safetensors", release)
    truncated = tmp_path / "half.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="half.safetensors. cannot be loaded: truncated: it holds"):
        read_lora(truncated)
    model_like = tmp_path / "model.safetensors"
    save_file({"transformer_blocks.0.attn1.to_q.weight": torch.zeros(4, 4)}, str(model_like))
    with pytest.raises(ValueError, match="holds no LoRA tensors"):
        read_lora(model_like)


def test_a_lora_for_another_base_model_names_the_misfit(parts, tmp_path):
    wide = {"transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 1920),
            "transformer.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.zeros(1920, 4),
            "transformer.transformer_blocks.40.attn1.to_q.lora_A.weight": torch.zeros(4, 32),
            "transformer.transformer_blocks.40.attn1.to_q.lora_B.weight": torch.zeros(32, 4)}
    path = lora_writers.write(tmp_path / "cogvideox_2b.safetensors", wide)
    lora = read_lora(path)
    with pytest.raises(ValueError) as error:
        attach(parts.transformer, [Director("x", "S", 1.0, lora)], "CogVideoX-5b-I2V")
    text = str(error.value)
    assert "cogvideox_2b.safetensors" in text and "1920->1920, the layer is 32->32" in text
    assert "transformer_blocks.40.attn1.to_q: no such linear layer" in text


def test_switch_once_runs_s_then_t_in_one_run(parts, tiny_model_dir, tmp_path):
    s_file = build_tiny_lora(tiny_model_dir, tmp_path / "s.safetensors", "s", seed=1)
    t_file = build_tiny_lora(tiny_model_dir, tmp_path / "t.safetensors", "t", seed=1)
    s_dir = Director("orbit_left", "S", 1.0, read_lora(s_file))
    t_dir = Director("motion", "T", 1.0, read_lora(t_file))
    refs = attach(parts.transformer, [s_dir, t_dir], "tiny")
    plan = schedule.switch_once("orbit_left", "motion", switch_step=3, steps=6)
    layer = lora_layers(parts.transformer)[0]
    active = []
    image = torch.rand(parts.spec.height, parts.spec.width, 3, generator=torch.Generator().manual_seed(0))
    from dimx_core.hooks import Hooks

    hooks = Hooks(progress=lambda step, total, preview: active.append(tuple(layer.active_adapters)))
    s_file.unlink(), t_file.unlink()  # switching must not read the files again
    # switched as PEFT adapters (merged: tests/unit/test_speed.py)
    adapters = Runtime(lambda m: CPU, speed=SpeedOptions(merge_directors=False), preview_every=0)
    settings = SamplerSettings(steps=6, seed=5)
    switched = generate(parts, VideoRequest(image, "a cat", settings=settings, directors=refs, schedule=plan),
                        adapters.with_hooks(hooks))
    s, t = s_dir.adapter_name, t_dir.adapter_name
    assert active == [(s,), (s,), (s,), (t,), (t,), (t,)]
    assert layer.active_adapters == []  # the shared model is left as the base model

    by_hand = schedule.DirectorSchedule(6, (schedule.Segment(0, 3, (("orbit_left", None),)),
                                            schedule.Segment(3, 6, (("motion", 1.0),))))
    again = generate(parts, VideoRequest(image, "a cat", settings=settings, directors=refs, schedule=by_hand),
                     adapters)
    plain = generate(parts, VideoRequest(image, "a cat", settings=settings), adapters)
    assert torch.equal(switched.frames, again.frames)
    assert (switched.frames - plain.frames).abs().max() > 1e-3


def test_a_pickled_request_run_elsewhere_from_the_director_files_gives_the_same_video(tiny_model_dir, tmp_path):
    """What a worker process does: its own copy of the model, the directors read from the files the request names,
    the request as it arrives over a pipe. Same frames, bit for bit."""
    here = load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    files = {kind: build_tiny_lora(tiny_model_dir, tmp_path / f"{kind}.safetensors", kind, seed=2) for kind in "st"}
    chain = [Director("orbit_left", "S", 1.0, read_lora(files["s"])),
             Director("motion", "T", 0.7, read_lora(files["t"]))]
    image = torch.rand(here.spec.height, here.spec.width, 3, generator=torch.Generator().manual_seed(3))
    request = VideoRequest(image, "a cat", settings=SamplerSettings(steps=3, seed=4),
                           directors=attach(here.transformer, chain, "tiny"),
                           schedule=schedule.switch_once("orbit_left", "motion", 1, 3))
    runtime = Runtime(lambda m: CPU, preview_every=0)
    local = generate(here, request, runtime).frames

    arrived = pickle.loads(pickle.dumps(request))
    elsewhere = load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    loaded = [Director(ref.name, ref.role, ref.strength, read_lora(ref.path)) for ref in arrived.directors]
    assert attach(elsewhere.transformer, loaded, "tiny") == arrived.directors  # the same file versions
    assert arrived.key(elsewhere.identity) == request.key(here.identity)
    assert torch.equal(generate(elsewhere, arrived, runtime).frames, local)


def test_a_schedule_naming_a_director_not_attached_is_refused(parts, tiny_model_dir, tmp_path):
    lora = read_lora(build_tiny_lora(tiny_model_dir, tmp_path / "s.safetensors", "s", seed=7))
    loose = Director("orbit_left", "S", 1.0, lora)  # never attached: switching to it would run the base model
    with pytest.raises(ValueError, match=r"directors \['orbit_left'\] are not attached"):
        DirectorControl(parts.transformer, [loose.ref], schedule.constant(["orbit_left"], 2))


def test_schedule_text_with_steps_percent_and_strengths():
    plan = schedule.parse("0-3: orbit_left   # layout first\n6%-100%: motion@0.8, orbit_left@0.2\n",
                          steps=50, known={"orbit_left", "motion"})
    assert plan.active_at(0) == plan.active_at(2) == (("orbit_left", None),)
    assert plan.active_at(3) == (("motion", 0.8), ("orbit_left", 0.2)) == plan.active_at(49)
    assert "steps 0-2: orbit_left" in plan.describe()


def test_a_schedule_line_without_a_range_covers_the_whole_run():
    """What the Director Chooser answers ('orbit_left') is a schedule: linked into the sampler, it picks that
    director among the connected ones for every step."""
    plan = schedule.parse("orbit_left", steps=50, known={"orbit_left", "orbit_up"})
    assert plan == schedule.constant(["orbit_left"], 50)


@pytest.mark.parametrize("text, message", [
    ("0-3 orbit_left", r"is not '\[START-END:\] name"),
    ("0-3: dolly", "names director 'dolly'"),
    ("0-30: orbit_left\n20-50: motion", "overlap at step 20"),
    ("0-60: motion", "outside the run's steps 0-50"),
])
def test_bad_schedules_are_explained(text, message):
    with pytest.raises(ValueError, match=message):
        schedule.parse(text, steps=50, known={"orbit_left", "motion"})


def test_lora_info_describes_the_trained_scale(release, tmp_path):
    lora = read_lora(lora_writers.write(tmp_path / "x.safetensors", release))
    text = lora.describe()
    assert f"rank: {TINY_LORA_RANK}" in text and "alpha: none" in text
    assert f"W + {1 / TINY_LORA_RANK:g}·B·A" in text and "blocks 0..1 (2 blocks)" in text
