"""The video nodes, executed directly inside a real ComfyUI 0.3.75 process (CPU)."""
import shutil

import pytest
import torch

from dimx_core.tiny import build_tiny_lora, build_tiny_t5_file


@pytest.fixture(scope="module")
def folders(pack, tiny_model_dir, tmp_path_factory):
    """ComfyUI's model folders pointed at a tiny model, tiny directors and single files."""
    import folder_paths

    root = tmp_path_factory.mktemp("models")
    shutil.copytree(tiny_model_dir, root / "dimensionx" / "tiny-i2v")
    for kind, seed in (("s", 1), ("t", 2)):
        build_tiny_lora(tiny_model_dir, root / "loras" / "dimx" / f"{kind}.safetensors", kind, seed)
    (root / "loras" / "broken.safetensors").write_bytes(b"\x00" * 16)
    for folder, source in (("diffusion_models", "transformer/diffusion_pytorch_model.safetensors"),
                           ("vae", "vae/diffusion_pytorch_model.safetensors")):
        (root / folder).mkdir()
        shutil.copy(tiny_model_dir / source, root / folder / f"tiny_{folder}.safetensors")
    build_tiny_t5_file(root / "text_encoders" / "tiny_text_encoders.safetensors")  # pairs with ComfyUI's tokenizer
    for folder in ("dimensionx", "loras", "diffusion_models", "vae", "text_encoders"):
        folder_paths.add_model_folder_path(folder, str(root / folder), is_default=True)
    return root


@pytest.fixture(scope="module")
def model(pack, folders, node_classes):
    return node_classes["DimensionXLoadVideoModel"].execute("tiny-i2v", "fp32").result[0]


def image(h=96, w=144):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(0))


def directors(node_classes):
    load = node_classes["DimensionXLoadDirectorLoRA"].execute
    chain = load("dimx/s.safetensors", "S", "orbit_left", 1.0).result[0]
    return load("dimx/t.safetensors", "T", "", 0.9, chain).result[0]


def sample(node_classes, model, **overrides):
    args = dict(model=model, image=image(), prompt="a cat", negative_prompt="", steps=3, guidance=6.0,
                use_dynamic_cfg=True, scheduler="ddim", seed=11)
    args.update(overrides)
    return node_classes["DimensionXDirectorSampler"].execute(**args).result


def test_model_folder_is_listed_and_loaded(node_classes, model):
    schema = node_classes["DimensionXLoadVideoModel"].GET_SCHEMA()
    assert "tiny-i2v" in schema.inputs[0].options
    assert model.parts.spec.frames == 17 and len(model.patchers) == 3


def test_sampler_outputs_frames_latent_and_fps(node_classes, model):
    frames, latent, fps, info, video = sample(node_classes, model)
    assert frames.shape == (17, 96, 144, 3) and 0 <= frames.min() and frames.max() <= 1
    components = video.get_components()
    assert torch.equal(components.images, frames) and components.frame_rate == 8
    assert latent["samples"].shape == (1, 16, 5, 12, 18)
    assert fps == 8.0 and "no director" in info


def test_director_chain_names_and_defaults(node_classes):
    chain = directors(node_classes)
    assert [(d.name, d.role, d.strength) for d in chain] == [("orbit_left", "S", 1.0), ("t", "T", 0.9)]
    with pytest.raises(ValueError, match="already in the chain"):
        node_classes["DimensionXLoadDirectorLoRA"].execute("dimx/s.safetensors", "S", "orbit_left", 1.0, chain)


def test_loader_names_a_broken_file_and_a_file_outside_the_folders(node_classes):
    load = node_classes["DimensionXLoadDirectorLoRA"].execute
    with pytest.raises(ValueError, match="broken.safetensors' cannot be loaded: its header is not a .safetensors"):
        load("broken.safetensors", "S", "", 1.0)
    with pytest.raises(ValueError, match="is not in ComfyUI's 'loras' folder"):
        load("../../etc/passwd", "S", "", 1.0)


def test_switch_once_equals_the_same_schedule_by_hand(node_classes, model):
    chain = directors(node_classes)
    switch = node_classes["DimensionXSwitchOnceSampler"].execute(
        model=model, image=image(), prompt="a cat", negative_prompt="", steps=3, guidance=6.0, use_dynamic_cfg=True,
        scheduler="ddim", seed=11, directors=chain, switch_step=1).result
    by_hand = sample(node_classes, model, directors=chain, schedule="0-1: orbit_left\n1-3: t")
    plain = sample(node_classes, model)
    assert "steps 0-0: orbit_left; steps 1-2: t" in switch[3]
    assert torch.equal(switch[0], by_hand[0])
    assert (switch[0] - plain[0]).abs().max() > 1e-3


def test_switch_once_needs_one_director_per_role(node_classes, model):
    load = node_classes["DimensionXLoadDirectorLoRA"].execute
    only_s = load("dimx/s.safetensors", "S", "a", 1.0).result[0]
    with pytest.raises(ValueError, match="connect exactly one T-Director"):
        node_classes["DimensionXSwitchOnceSampler"].execute(
            model=model, image=image(), prompt="x", negative_prompt="", steps=2, guidance=6.0, use_dynamic_cfg=True,
            scheduler="ddim", seed=0, directors=only_s, switch_step=1)


def test_t5_conditioning_replaces_the_prompt_and_short_states_are_refused(node_classes, model):
    states = model.parts.text_encoder(model.parts.tokenizer(["a cat"], padding="max_length", max_length=226,
                                                            truncation=True, return_tensors="pt").input_ids)[0]
    with_states = sample(node_classes, model, prompt="ignored", positive=[[states, {}]])
    with_text = sample(node_classes, model, prompt="a cat")
    torch.testing.assert_close(with_states[0], with_text[0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="positive: these T5 states have 77 tokens, but CogVideoX reads 226"):
        sample(node_classes, model, positive=[[states[:, :77], {}]])
    with pytest.raises(ValueError, match="expected T5-XXL states of width 32"):
        sample(node_classes, model, positive=[[torch.zeros(1, 77, 768), {}]])


def test_single_files_mode_borrows_comfyuis_own_t5_tokenizer(node_classes, folders, pack):
    tokenizer = pack.nodes.host.t5_tokenizer_folder()  # comfy.text_encoders is a namespace package on 0.3.75
    assert (tokenizer / "tokenizer.json").is_file() and tokenizer.parent.name == "text_encoders"
    load = node_classes["DimensionXLoadVideoModel"].execute
    with pytest.raises(ValueError, match="needs vae_file, text_encoder_file"):
        load("(single files below)", "fp32", "tiny_diffusion_models.safetensors")
    loaded, info = load("(single files below)", "fp32", "tiny_diffusion_models.safetensors", "tiny_vae.safetensors",
                        "tiny_text_encoders.safetensors").result
    assert "CogVideoX 1.0 image-to-video, 144x96, 17 frames" in info
    assert loaded.parts.transformer.config.num_layers == 2 and len(loaded.parts.tokenizer) == 32100
    frames = sample(node_classes, loaded, steps=1)[0]
    assert frames.shape == (17, 96, 144, 3) and torch.isfinite(frames).all()


def test_articulated_video_chains_clips_along_the_path(node_classes, model):
    path = node_classes["DimensionXArticulatedPathPlanner"].execute(
        "orbit_left", 60.0, 30.0, 17, 2.0, 0.0, 60.0, 144, 96).result[0]
    load = node_classes["DimensionXLoadDirectorLoRA"].execute
    chain = load("dimx/s.safetensors", "S", "orbit_left", 1.0).result[0]
    frames, fps, same_path, info, video = node_classes["DimensionXArticulatedVideo"].execute(
        model=model, image=image(), prompt="a house", negative_prompt="", steps=2, guidance=6.0, use_dynamic_cfg=True,
        scheduler="ddim", seed=1, path=path, directors=chain).result
    assert len(path) == 33 and frames.shape == (33, 96, 144, 3)  # two clips of 17 sharing one frame
    assert same_path is path and fps == 8.0 and info.startswith("2 clips (orbit_left, orbit_left)")
    assert torch.equal(video.get_components().images, frames)
    wrong = node_classes["DimensionXArticulatedPathPlanner"].execute(
        "orbit_left", 60.0, 30.0, 49, 2.0, 0.0, 60.0, 144, 96).result[0]
    with pytest.raises(ValueError, match="frames_per_clip=17"):
        node_classes["DimensionXArticulatedVideo"].execute(
            model=model, image=image(), prompt="x", negative_prompt="", steps=1, guidance=6.0, use_dynamic_cfg=True,
            scheduler="ddim", seed=1, path=wrong, directors=chain)


def test_4d_nodes_chain_reference_guide_multiview_and_refine(node_classes, model, tmp_path, monkeypatch, pack):
    monkeypatch.setattr(pack.nodes.host, "cache_folder", lambda name: tmp_path / name)
    video = torch.rand(5, 96, 144, 3, generator=torch.Generator().manual_seed(4))
    video[2, 30:60, 40:80] = 1.0  # a bright patch appears and goes: frames 1-3 move most
    index, frame, mask, scores = node_classes["DimensionXSelectReferenceFrame"].execute(video, 1.0).result
    assert 0 <= index < 5 and frame.shape == (1, 96, 144, 3) and mask.shape == (1, 96, 144)
    chain = directors(node_classes)
    v_ref = torch.rand(17, 96, 144, 3)
    guide = node_classes["DimensionXReferenceLatentShare"].execute(model, v_ref, 0.9, 0.5, 0, 1, 0).result[0]
    multiview, views, times, info = node_classes["DimensionXMultiViewGenerate"].execute(
        model=model, prompt="x", negative_prompt="", steps=2, guidance=6.0, use_dynamic_cfg=True, scheduler="ddim",
        seed=0, temporal_frames=video[:2], directors=chain, views=3, resume=True, guide=guide).result
    assert (views, times) == (3, 2) and multiview.shape == (6, 96, 144, 3) and "identity guide" in info
    assert len(list((tmp_path / "multiview").glob("*.pt"))) == 2
    refined = node_classes["DimensionXAppearanceRefine"].execute(model, multiview, views, "x", "", 0.5, False, 2,
                                                                 6.0, 0, chain).result[0]
    assert refined.shape == multiview.shape and not torch.equal(refined, multiview)
    with pytest.raises(ValueError, match="do not split into 4 videos"):
        node_classes["DimensionXAppearanceRefine"].execute(model, multiview, 4, "x", "", 0.5, False, 2, 6.0, 0)
