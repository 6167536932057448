"""The pack on ComfyUI's own CogVideoX (hosts with native CogVideoX, e.g. 0.33): directors applied to a core MODEL
through core's model patcher, Switch-Once on core samplers, and the pack's samplers on the host's weights."""
import shutil

import pytest
import torch

from dimx_core.directors.formats import read_lora
from harness.assets import TINY_LORAS
from harness.comfyhost import REPO
from harness.workflows import load_workflow, ui_to_api
from dimx_core.tiny import build_tiny_lora, build_tiny_model
from dimx_core.video.sampling import rotary_embeddings
from tests.core_models import core_cogvideox_model


@pytest.fixture(scope="module", autouse=True)
def native_host(pack, node_classes):
    if not pack.nodes.host.host_features()["native_cogvideox"]:
        pytest.skip("this ComfyUI has no native CogVideoX (comfy.ldm.cogvideo, ComfyUI 0.33 and newer)")


@pytest.fixture(scope="module")
def tiny_core(tmp_path_factory, pack):
    """A tiny model with heads ComfyUI's loader reads, in models/dimensionx, and its directors in models/loras."""
    import folder_paths

    root = tmp_path_factory.mktemp("core-models")
    model_dir = build_tiny_model(root / "dimensionx" / "tiny-core", seed=3, version="1.0-core")
    for kind, seed in (("s", 1), ("t", 2)):
        build_tiny_lora(model_dir, root / "loras" / "core" / f"{kind}.safetensors", kind, seed)
    shutil.copy(build_tiny_lora(build_tiny_model(root / "other", version="1.0"), root / "small.safetensors", "s"),
                root / "loras" / "core" / "for_another_model.safetensors")
    folder_paths.add_model_folder_path("dimensionx", str(root / "dimensionx"), is_default=True)
    folder_paths.add_model_folder_path("loras", str(root / "loras"), is_default=True)
    return model_dir


def lora_delta(path, strength=1.0) -> torch.Tensor:
    """strength x (1/rank) B A of block 0's query: the released files' trained effect."""
    target = read_lora(path).targets["transformer_blocks.0.attn1.to_q"]
    return strength * (target.up.float() @ target.down.float()) / target.rank


def test_core_forward_is_not_the_trained_5b_i2v_so_the_pack_binds_its_own(tiny_core):
    """Why bound.py exists: core 0.33 turns RoPE off for a checkpoint with learned positions (5b-I2V has both)."""
    import diffusers

    reference = diffusers.CogVideoXTransformer3DModel.from_pretrained(tiny_core, subfolder="transformer")
    core = core_cogvideox_model(tiny_core).model.diffusion_model
    x, text, t = torch.randn(1, 5, 32, 12, 18), torch.randn(1, 226, 32), torch.tensor([500.0])
    with torch.no_grad():
        trained = reference(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False,
                            image_rotary_emb=rotary_embeddings(reference.config, x.shape, x.device))[0]
        without_rope = reference(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]
        native = core(x.permute(0, 2, 1, 3, 4), t, text).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(native, without_rope, rtol=0, atol=1e-5)
    assert (native - trained).abs().max() > 1e-3


def test_director_on_a_core_model_is_a_core_patch_of_strength_over_rank(node_classes, tiny_core):
    import comfy.model_management as mm

    base = core_cogvideox_model(tiny_core)
    weight = base.model.diffusion_model.blocks[0].q.weight.detach().clone()
    apply = node_classes["DimensionXApplyDirectorToModel"].execute
    patched = apply(base, "core/s.safetensors", 0.5).result[0]
    assert patched is not base and len(patched.patches) == 2 * 4  # q, k, v, out of both blocks
    mm.load_models_gpu([patched], force_full_load=True)
    expected = weight + lora_delta(tiny_core.parent.parent / "loras" / "core" / "s.safetensors", 0.5)
    torch.testing.assert_close(patched.model.diffusion_model.blocks[0].q.weight, expected, rtol=0, atol=1e-6)
    mm.unload_all_models()
    torch.testing.assert_close(base.model.diffusion_model.blocks[0].q.weight, weight, rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not fit this CogVideoX MODEL: transformer_blocks.0.attn1.to_k: LoRA "
                                         "maps 32->32, the layer is 192->192"):
        apply(base, "core/for_another_model.safetensors", 1.0)


def test_core_switch_once_workflow_runs_its_s_director_on_the_first_steps_then_the_t_director(node_classes,
                                                                                             tiny_core):
    """workflows/newest-host/video_switch_once_core_samplers.json as core runs it: its two KSampler (Advanced)
    nodes, with their own widget values, each on the MODEL through its Apply Director node (the workflow's LoRA
    names built here from tiny-core LoRAs). The S-Director is in place exactly on steps 0..k-1, the T-Director on
    steps k..end. The tiny weights cannot go through core's loaders (they build only the published sizes), so the
    MODEL is built directly and the image condition left out."""
    import nodes as core_nodes

    workflow = load_workflow(REPO / "workflows" / "newest-host" / "video_switch_once_core_samplers.json")
    info = {node["type"]: {"input": {}} for node in workflow["nodes"]}
    info["KSamplerAdvanced"] = {"input": core_nodes.KSamplerAdvanced.INPUT_TYPES()}
    info["DimensionXApplyDirectorToModel"] = {"input": node_classes["DimensionXApplyDirectorToModel"].INPUT_TYPES()}
    prompt = ui_to_api(workflow, info)
    samplers = sorted((node for node in prompt.values() if node["class_type"] == "KSamplerAdvanced"),
                      key=lambda node: node["inputs"]["start_at_step"])
    first, second = (node["inputs"] for node in samplers)
    assert second["latent_image"][0] in prompt and prompt[second["latent_image"][0]] is samplers[0]

    base = core_cogvideox_model(tiny_core)
    weight = base.model.diffusion_model.blocks[0].q.weight.detach().clone()
    loras, expected, models = tiny_core.parent.parent / "loras", {}, []
    for sampler in (first, second):
        director = prompt[sampler["model"][0]]["inputs"]
        kind, seed = TINY_LORAS[director["lora_name"]]
        build_tiny_lora(tiny_core, loras / director["lora_name"], kind, seed)
        expected[kind.upper()] = weight + lora_delta(loras / director["lora_name"], director["strength"])
        models.append(node_classes["DimensionXApplyDirectorToModel"].execute(
            base, director["lora_name"], director["strength"]).result[0])
    seen = []
    for model in models:
        def wrapper(apply_model, args, model=model):
            active = model.model.diffusion_model.blocks[0].q.weight
            seen.append("".join(name for name, w in expected.items() if torch.allclose(active, w, atol=1e-6)))
            return apply_model(args["input"], args["timestep"], **args["c"])
        model.set_model_unet_function_wrapper(wrapper)

    text = [[torch.randn(1, 226, 32, generator=torch.Generator().manual_seed(0)), {}]]
    latent = {"samples": torch.zeros(1, 16, 5, 12, 18)}
    widgets = ("add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "start_at_step",
               "end_at_step", "return_with_leftover_noise")
    for model, sampler in zip(models, (first, second)):
        latent = core_nodes.KSamplerAdvanced().sample(model, positive=text, negative=text, latent_image=latent,
                                                      **{name: sampler[name] for name in widgets})[0]
    switch, steps = first["end_at_step"], first["steps"]
    assert (second["start_at_step"], second["steps"], first["start_at_step"]) == (switch, steps, 0)
    assert seen == ["S"] * switch + ["T"] * (steps - switch)
    assert torch.isfinite(latent["samples"]).all()


def step_outputs(model, node_classes, directors):
    """Every model call's output of a 3-step Switch-Once run of the pack's sampler."""
    outputs = []
    hook = model.parts.transformer.register_forward_hook(lambda module, args, out: outputs.append(out[0].clone()))
    try:
        node_classes["DimensionXSwitchOnceSampler"].execute(
            model=model, image=torch.rand(1, 96, 144, 3, generator=torch.Generator().manual_seed(0)),
            prompt="a cat", negative_prompt="", steps=3, guidance=6.0, use_dynamic_cfg=True, scheduler="ddim",
            seed=5, directors=directors, switch_step=1)
    finally:
        hook.remove()
    return outputs


def test_pack_samplers_on_the_host_model_match_the_folder_model_step_by_step(node_classes, tiny_core):
    load = node_classes["DimensionXLoadVideoModel"].execute
    from_folder = load("tiny-core", "fp32").result[0]
    host_model = core_cogvideox_model(tiny_core)
    on_host, info = load("tiny-core", "fp32", host_model=host_model).result
    assert "transformer from ComfyUI's own model" in info
    core_weight = host_model.model.diffusion_model.blocks[1].ff_out.weight
    assert on_host.parts.transformer.transformer_blocks[1].ff.net[2].weight is core_weight  # shared, not copied
    chain = node_classes["DimensionXLoadDirectorLoRA"].execute("core/s.safetensors", "S", "orbit", 1.0).result[0]
    chain = node_classes["DimensionXLoadDirectorLoRA"].execute("core/t.safetensors", "T", "motion", 1.0,
                                                              chain).result[0]
    reference, bound = step_outputs(from_folder, node_classes, chain), step_outputs(on_host, node_classes, chain)
    assert len(reference) == len(bound) == 3
    for expected, got in zip(reference, bound):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_host_model_sees_core_patches_applied_to_it(node_classes, tiny_core):
    """A core LoRA (here a director applied the core way) on the MODEL stays applied under the pack's samplers."""
    patched = node_classes["DimensionXApplyDirectorToModel"].execute(core_cogvideox_model(tiny_core),
                                                                     "core/t.safetensors", 1.0).result[0]
    model = node_classes["DimensionXLoadVideoModel"].execute("tiny-core", "fp32", host_model=patched).result[0]
    base = core_cogvideox_model(tiny_core).model.diffusion_model.blocks[0].q.weight.detach()
    model.place(model.parts.transformer)
    expected = base + lora_delta(tiny_core.parent.parent / "loras" / "core" / "t.safetensors")
    torch.testing.assert_close(model.parts.transformer.transformer_blocks[0].attn1.to_q.weight, expected,
                               rtol=0, atol=1e-6)


def test_a_model_that_is_not_cogvideox_is_refused_by_name(node_classes, tiny_core):
    class NotCogVideoX:
        model = type("Base", (), {"diffusion_model": torch.nn.Linear(2, 2)})()

    with pytest.raises(ValueError, match="host_model: this MODEL is a torch.nn.modules.linear.Linear, not "
                                         "ComfyUI's native CogVideoX"):
        node_classes["DimensionXLoadVideoModel"].execute("tiny-core", "fp32", host_model=NotCogVideoX())


def test_host_vae_is_bound_without_a_copy_and_encodes_as_the_folders(node_classes, tiny_core):
    """ComfyUI's CogVideoX VAE module (built at the tiny size; core's loader builds only the published one) holding
    the folder's VAE weights: Load Video Model uses it in place of the folder's, sharing its tensors."""
    import comfy.ldm.cogvideo.vae
    import comfy.model_management as mm
    import comfy.model_patcher

    core = comfy.ldm.cogvideo.vae.AutoencoderKLCogVideoX(block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                                                         groups=8).eval()
    load = node_classes["DimensionXLoadVideoModel"].execute
    from_folder = load("tiny-core", "fp32").result[0]
    core.load_state_dict(from_folder.parts.vae.state_dict())
    host_vae = type("HostVAE", (), {"first_stage_model": core, "patcher": comfy.model_patcher.ModelPatcher(
        core, load_device=mm.vae_device(), offload_device=mm.vae_offload_device())})()
    on_host = load("tiny-core", "fp32", host_vae=host_vae).result[0]
    assert on_host.parts.vae.decoder.conv_in.conv.weight is core.decoder.conv_in.conv.weight
    pixels = torch.rand(1, 3, 9, 96, 144, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        expected = from_folder.parts.vae.encode(pixels).latent_dist.mean
        got = on_host.parts.vae.encode(pixels).latent_dist.mean
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
