"""Speed options: each one is exact or within its stated tolerance, and each leaves the shared model as it was."""
import dataclasses

import pytest
import torch

from dimx_core.directors import schedule
from dimx_core.directors.adapters import Director, DirectorControl, attach
from dimx_core.directors.formats import read_lora
from dimx_core.hooks import Hooks, Interrupted
from dimx_core.speed.attention import PackAttention, TokensMajorFlash, choose_kernel, installed, sdpa
from dimx_core.speed.fp8 import Fp8Linear, fp8_linear, fp8_linear_reference, quantize_rowwise
from dimx_core.speed.memory import tiled_vae
from dimx_core.speed.options import LossyOptions, SpeedOptions
from dimx_core.speed.session import attention_shape, speed_applied
from dimx_core.tiny import build_tiny_lora
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.runtime import Runtime
from dimx_core.video.sampling import denoise, generate, rotary_embeddings
from dimx_core.video.solvers import dynamic_guidance, guidance_scales, make_scheduler

CPU = torch.device("cpu")
LATENTS = (1, 5, 16, 12, 18)  # the tiny model's (B, F, C, h, w)
SHAPE = (2, 2, 226 + 5 * 6 * 9, 16)  # its attention calls: (batch, heads, tokens, head_dim)
Q = "transformer_blocks.1.attn1.to_q"


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.fixture
def parts(tiny_model_dir):
    return load_diffusers_folder(tiny_model_dir, dtype=torch.float32)


@pytest.fixture
def parts16(tiny_model_dir):
    return load_diffusers_folder(tiny_model_dir, dtype=torch.bfloat16)


@pytest.fixture(scope="module")
def lora_files(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("directors")
    return {kind: build_tiny_lora(tiny_model_dir, folder / f"{kind}.safetensors", kind, seed=3) for kind in "st"}


def directors_on(transformer, lora_files, switch_step=1, steps=3):
    """An S-Director (strength 1) then a T-Director (strength 0.8), attached; the Switch-Once control."""
    chain = [Director("orbit", "S", 1.0, read_lora(lora_files["s"])),
             Director("motion", "T", 0.8, read_lora(lora_files["t"]))]
    attach(transformer, chain, "the tiny model")
    return chain, DirectorControl(transformer, chain, schedule.switch_once("orbit", "motion", switch_step, steps))


def with_directors(image, prompt, settings, control, lossy=LossyOptions()):
    """A request for a run under `control`'s directors and schedule."""
    refs = tuple(director.ref for director in control.by_name.values())
    return VideoRequest(image, prompt, settings=settings, directors=refs, schedule=control.schedule, lossy=lossy)


def forward(transformer):
    """One guided transformer call on fixed random inputs; the output in fp32."""
    generator = torch.Generator().manual_seed(0)
    config, dtype = transformer.config, transformer.dtype
    hidden = torch.randn(2, 5, 32, 12, 18, generator=generator).to(dtype)
    text = torch.randn(2, 226, config.text_embed_dim, generator=generator).to(dtype)
    return transformer(hidden_states=hidden, encoder_hidden_states=text, timestep=torch.tensor([999, 999]),
                       image_rotary_emb=rotary_embeddings(config, LATENTS, CPU), return_dict=False)[0].float()


def forward_with(transformer, speed, control=None, step=0, backend="inductor"):
    notes = []
    with torch.no_grad(), speed_applied(transformer, speed, control, SHAPE, notes, backend) as directors:
        if directors is not None:
            directors.apply(step)
        return forward(transformer), notes


def snapshot(transformer):
    return {name: p.detach().clone() for name, p in transformer.named_parameters()}


def assert_is_base_model(transformer, before):
    """Bit-exact weights, diffusers' processors, no stand-in layers, q/k/v with storage of their own."""
    for name, p in transformer.named_parameters():
        assert torch.equal(p, before[name]), name
    modules = list(transformer.modules())
    assert not any(isinstance(m, Fp8Linear) for m in modules)
    for block in transformer.transformer_blocks:
        attn = block.attn1
        assert not isinstance(attn.processor, PackAttention)
        layers = [getattr(attn, n).get_base_layer() if hasattr(getattr(attn, n), "base_layer") else getattr(attn, n)
                  for n in ("to_q", "to_k", "to_v")]
        assert len({layer.weight.untyped_storage().data_ptr() for layer in layers}) == 3
        assert all(not getattr(getattr(attn, n), "active_adapters", []) for n in ("to_q", "to_k", "to_v"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pack_processor_equals_diffusers_bit_for_bit(tiny_model_dir, dtype):
    transformer = load_diffusers_folder(tiny_model_dir, dtype=dtype).transformer
    with torch.no_grad():
        reference = forward(transformer)
    ours, notes = forward_with(transformer, SpeedOptions.off())
    assert torch.equal(ours, reference)
    assert notes == ["attention: PyTorch SDPA, its own backend choice"]


def test_fused_qkv_equals_unfused_and_holds_no_second_copy(parts):
    transformer = parts.transformer
    before = snapshot(transformer)
    with torch.no_grad():
        reference = forward(transformer)
    notes = []
    with torch.no_grad(), speed_applied(transformer, SpeedOptions(), None, SHAPE, notes):
        attn = transformer.transformer_blocks[1].attn1
        fused = attn.processor.qkv.weight
        assert fused.shape == (96, 32)
        for index, name in enumerate(("to_q", "to_k", "to_v")):  # views into the fused tensor, not copies
            weight = getattr(attn, name).weight
            assert weight.untyped_storage().data_ptr() == fused.untyped_storage().data_ptr()
            assert torch.equal(weight, fused[32 * index:32 * (index + 1)])
        out = forward(transformer)
    assert "fused QKV projection in 2 blocks" in notes
    assert torch.allclose(out, reference, atol=1e-6, rtol=0)
    assert_is_base_model(transformer, before)


def test_fused_qkv_steps_aside_for_unmerged_adapters(parts, lora_files):
    transformer = parts.transformer
    _, control = directors_on(transformer, lora_files)
    base = forward_with(transformer, SpeedOptions.off())[0]
    unfused = forward_with(transformer, SpeedOptions.off(), control)[0]
    fused = forward_with(transformer, SpeedOptions(merge_directors=False), control)[0]
    assert torch.allclose(fused, unfused, atol=1e-6, rtol=0)
    assert rel(unfused, base) > 1e-3  # the adapters did act through the fused path's fallback


def test_merged_directors_equal_unmerged_in_fp32(parts, lora_files):
    transformer = parts.transformer
    _, control = directors_on(transformer, lora_files)
    before = snapshot(transformer)
    for step in (0, 2):  # S-Director, then T-Director
        unmerged = forward_with(transformer, SpeedOptions.off(), control, step)[0]
        merged = forward_with(transformer, SpeedOptions(), control, step)[0]
        assert rel(merged, unmerged) < 1e-6
    assert_is_base_model(transformer, before)


def test_merged_directors_in_bf16_are_as_accurate_as_unmerged(parts, parts16, lora_files):
    _, control32 = directors_on(parts.transformer, lora_files)
    _, control16 = directors_on(parts16.transformer, lora_files)
    truth = forward_with(parts.transformer, SpeedOptions.off(), control32, step=2)[0]
    unmerged = forward_with(parts16.transformer, SpeedOptions.off(), control16, step=2)[0]
    merged = forward_with(parts16.transformer, SpeedOptions(), control16, step=2)[0]
    assert rel(merged, truth) <= 1.2 * rel(unmerged, truth)  # measured: 6.1e-3 both
    assert rel(merged, unmerged) < 5e-3


def test_subtracting_a_merged_delta_does_not_restore_bf16_weights(parts16, lora_files):
    """Why MergedDirectors keeps a host copy of the base weights: rounding W + d to bf16 loses bits for good."""
    transformer = parts16.transformer
    chain, _ = directors_on(transformer, lora_files)
    layer = transformer.get_submodule(Q)
    adapter = chain[0].adapter_name
    weight = layer.get_base_layer().weight.detach()
    delta = layer.lora_B[adapter].weight.float() @ layer.lora_A[adapter].weight.float() / layer.r[adapter]
    merged = (weight.float() + delta).to(torch.bfloat16)
    assert (((merged.float() - delta).to(torch.bfloat16)) != weight).sum() > weight.numel() // 20


def test_switch_once_merges_s_then_t_and_restores_the_base_bit_exactly(parts16, lora_files):
    transformer = parts16.transformer
    chain, control = directors_on(transformer, lora_files, switch_step=2, steps=4)
    before = snapshot(transformer)
    layer = transformer.get_submodule(Q)
    seen = []
    hooks = Hooks(progress=lambda step, total, preview: seen.append(layer.get_base_layer().weight.detach().clone()))
    image = torch.rand(96, 144, 3, generator=torch.Generator().manual_seed(0))
    settings = SamplerSettings(steps=4, seed=2)
    merged = generate(parts16, with_directors(image, "a cat", settings, control),
                      Runtime(lambda m: CPU, hooks=hooks, preview_every=0))
    base = before[f"{Q}.base_layer.weight"].float()

    def with_director(director):
        a, b = layer.lora_A[director.adapter_name].weight.float(), layer.lora_B[director.adapter_name].weight.float()
        return base + director.strength * (b @ a) / layer.r[director.adapter_name]

    assert torch.equal(seen[0], with_director(chain[0]).to(torch.bfloat16)) and torch.equal(seen[1], seen[0])
    for weight in seen[2:]:  # S taken out and T put in, in place: within one bf16 rounding of a fresh merge
        assert torch.allclose(weight.float(), with_director(chain[1]), atol=4e-3, rtol=2 ** -7)
    assert_is_base_model(transformer, before)
    unmerged = generate(parts16, with_directors(image, "a cat", settings, control),
                        Runtime(lambda m: CPU, speed=SpeedOptions(merge_directors=False), preview_every=0))
    assert rel(merged.latents, unmerged.latents) < 2e-2


def test_an_interrupted_run_leaves_the_base_model(parts16, lora_files):
    transformer = parts16.transformer
    _, control = directors_on(transformer, lora_files, switch_step=1, steps=4)
    before = snapshot(transformer)
    steps = []
    hooks = Hooks(progress=lambda step, total, preview: steps.append(step), should_stop=lambda: len(steps) >= 2)
    image = torch.rand(96, 144, 3)
    with pytest.raises(Interrupted):
        generate(parts16, with_directors(image, "x", SamplerSettings(steps=4), control, LossyOptions(fp8=True)),
                 Runtime(lambda m: CPU, hooks=hooks, preview_every=0))
    assert steps == [1, 2]
    assert_is_base_model(transformer, before)


def test_rowwise_fp8_rounding_stays_within_e4m3_precision():
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 2, 64)[:, None]
    values, scale = quantize_rowwise(x)
    assert values.dtype == torch.float8_e4m3fn and scale.shape == (64, 1)
    error = (values.float() * scale - x).abs()
    # 3 mantissa bits: half a step is 1/16 of the value; below e4m3's smallest normal (2^-6) steps are 2^-9
    assert (error <= torch.maximum(x.abs() / 16, scale * 2.0 ** -10) * (1 + 1e-6)).all()
    assert (values.float().abs().amax(dim=1) == 448).all()  # each row uses the full range


def test_fp8_product_equals_its_dequantised_reference():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(37, 64, generator=generator).to(torch.bfloat16)
    weight = torch.randn(48, 64, generator=generator).to(torch.bfloat16) / 8
    bias = torch.randn(48, generator=generator).to(torch.bfloat16)
    values, scale = quantize_rowwise(weight)
    try:
        fast = fp8_linear(x, values, scale.reshape(1, -1), bias)
    except (RuntimeError, NotImplementedError) as err:
        pytest.skip(f"this torch has no CPU fp8 product ({err}); the GPU bench checks the CUDA one")
    reference = fp8_linear_reference(x, values, scale.reshape(1, -1), bias)
    assert fast.dtype == torch.bfloat16 and fast.shape == (37, 48)
    assert rel(fast, reference) < 4e-3  # the kernel adds only its bf16 output rounding
    exact = x.float() @ weight.float().t() + bias.float()
    assert 1e-3 < rel(fast, exact) < 0.06  # and fp8 rounding is what separates it from bf16


def test_fp8_transformer_output_is_close_to_bf16(parts16):
    transformer = parts16.transformer
    before = snapshot(transformer)
    reference = forward_with(transformer, SpeedOptions())[0]
    fp8, notes = forward_with(transformer, SpeedOptions(fp8=True))
    assert any("fp8" in note for note in notes)
    assert 1e-4 < rel(fp8, reference) < 0.03  # measured 5e-3 on the tiny model
    assert_is_base_model(transformer, before)


def test_fp8_needs_a_bf16_model(parts):
    with pytest.raises(ValueError, match="fp8 needs the model in bf16"):
        forward_with(parts.transformer, SpeedOptions(fp8=True))


def test_compiled_blocks_match_eager_and_are_traced_once(parts):
    """Tracing checked with the aot_eager backend (inductor kernels are the GPU bench's part): one graph per
    block, the same numbers, and a second run finds the same processor objects, so nothing is traced again."""
    from torch._dynamo.utils import counters

    transformer = parts.transformer
    reference = forward_with(transformer, SpeedOptions())[0]
    counters.clear()
    compiled, notes = forward_with(transformer, SpeedOptions(compile=True), backend="aot_eager")
    assert not counters["graph_break"]  # the block is one graph: nothing in the processor stops tracing
    graphs = counters["stats"]["unique_graphs"]
    again = forward_with(transformer, SpeedOptions(compile=True), backend="aot_eager")[0]
    assert torch.equal(compiled, reference) and torch.equal(again, reference)
    assert counters["stats"]["unique_graphs"] == graphs
    assert any("compiled the transformer block (2 blocks" in note for note in notes)
    forward_with(transformer, SpeedOptions())
    assert all(block._compiled_call_impl is None for block in transformer.transformer_blocks)


def test_step_cache_off_is_exact_and_on_stays_close(parts):
    transformer = parts.transformer
    generator = torch.Generator().manual_seed(0)
    latents, image_latents = torch.randn(LATENTS, generator=generator), torch.randn(LATENTS, generator=generator)
    states = [torch.randn(1, 226, 32, generator=generator) for _ in range(2)]

    def run(threshold):
        return denoise(transformer, make_scheduler("ddim", parts.scheduler_config), latents, image_latents, states,
                       SamplerSettings(steps=8).resolved(parts.release), speed=SpeedOptions(step_cache=threshold))

    plain, cached, plain_again = run(0.0), run(0.5), run(0.0)
    assert torch.equal(plain, plain_again)  # the cache's hooks are gone after its run
    assert 0 < rel(cached, plain) < 0.05  # measured 4.9e-3: steps were reused, the result stayed close


def test_lossy_options_come_from_the_request_and_a_runtime_asking_for_others_is_refused(parts):
    """A worker's runtime carries no lossy options and takes the request's; a runtime that asks for other lossy
    options than its request would make another video than the request's key says, so it is refused."""
    request = VideoRequest(torch.rand(96, 144, 3), "x", settings=SamplerSettings(steps=1),
                           lossy=LossyOptions(step_cache=0.2))
    assert Runtime(lambda m: CPU).speed_for(request.lossy) == SpeedOptions(step_cache=0.2)
    assert Runtime(lambda m: CPU, speed=SpeedOptions(step_cache=0.2)).speed_for(request.lossy).step_cache == 0.2
    with pytest.raises(ValueError, match="belong to the request"):
        generate(parts, dataclasses.replace(request, lossy=LossyOptions()),
                 Runtime(lambda m: CPU, speed=SpeedOptions(fp8=True)))


def test_low_memory_mode_offloads_t5_and_keeps_the_latents(parts):
    image = torch.rand(96, 144, 3, generator=torch.Generator().manual_seed(3))
    offloaded = []
    settings = SamplerSettings(steps=1, seed=1)
    request = VideoRequest(image, "a cat", settings=settings)
    low = generate(parts, request, Runtime(lambda m: CPU, offload=offloaded.append, speed=SpeedOptions(low_memory=True),
                                           preview_every=0))
    normal = generate(parts, request, Runtime(lambda m: CPU, preview_every=0))
    assert offloaded == [parts.transformer, parts.text_encoder]  # T5 and the transformer never share the GPU
    assert torch.equal(low.latents, normal.latents)  # only the decode is tiled
    assert low.frames.shape == normal.frames.shape and rel(low.frames, normal.frames) < 0.15  # measured 0.065
    assert any("24 GB mode" in note for note in low.notes)


def test_tiled_decode_has_the_untiled_shape_and_stays_close(parts):
    """Tiles are an approximation: each tile's group norms see only the tile, which random weights exaggerate
    (0.2-0.28 over seeds here, on 6 x 9-latent tiles; the bench reports the full-size VAE). What must hold: the
    same frames, made from tiles, with the seams blended rather than wrong."""
    vae = parts.vae
    latents = torch.randn(1, 16, 1, 12, 18, generator=torch.Generator().manual_seed(4))  # one frame: tiles are slow
    calls = []
    handle = vae.decoder.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        whole = vae.decode(latents).sample
        untiled_calls = len(calls)
        with tiled_vae(vae, True):
            tiled = vae.decode(latents).sample
    handle.remove()
    assert tiled.shape == whole.shape == (1, 3, 1, 96, 144)
    assert len(calls) - untiled_calls >= 4 * untiled_calls  # at least 2 x 2 tiles
    assert rel(tiled, whole) < 0.35
    assert not vae.use_tiling and (vae.tile_overlap_factor_height, vae.tile_overlap_factor_width) == (1 / 6, 1 / 5)


def test_guidance_is_precomputed_from_the_timestep_values():
    scheduler = make_scheduler("ddim", {"num_train_timesteps": 1000, "timestep_spacing": "trailing"})
    scheduler.set_timesteps(50)
    dynamic = guidance_scales(6.0, True, "timestep", scheduler.timesteps)
    assert dynamic == [dynamic_guidance(6.0, 50, float(t)) for t in scheduler.timesteps]
    assert guidance_scales(4.5, False, "timestep", scheduler.timesteps) == [4.5] * 50


def test_attention_choices_on_the_cpu_and_their_errors():
    kernel, note = choose_kernel("auto", SHAPE, torch.float32, CPU)
    assert note == "attention: PyTorch SDPA, its own backend choice"
    with pytest.raises(ValueError, match="runs on CUDA GPUs only"):
        choose_kernel("flash", SHAPE, torch.float32, CPU)
    if not __import__("importlib").util.find_spec("sageattention"):
        with pytest.raises(ValueError, match="needs SageAttention .* not installed"):
            choose_kernel("sage", SHAPE, torch.float32, CPU)
    if not installed("fa4"):  # its parent package flash_attn may be absent too: no ModuleNotFoundError
        with pytest.raises(ValueError, match="needs FlashAttention-4 .* 'flash_attn.cute' is not installed"):
            choose_kernel("fa4", SHAPE, torch.float32, CPU)
    with pytest.raises(ValueError, match="attention must be one of"):
        SpeedOptions(attention="xformers")
    with pytest.raises(ValueError, match="step_cache"):
        SpeedOptions(step_cache=1.5)


def test_attention_shape_counts_text_tokens_and_patches(parts):
    assert attention_shape(parts.transformer.config, (2, 13, 32, 60, 90), 226) == (2, 2, 226 + 13 * 30 * 45, 16)


def test_cli_flags_become_speed_options():
    from dimx_core.cli import build_parser
    from dimx_core.speed.cli import options_from

    args = build_parser().parse_args(["generate", "--model", "m", "--image", "i.png", "--prompt", "p", "--out", "o",
                                      "--attention", "cudnn", "--no-fuse-qkv", "--fp8", "--low-memory",
                                      "--step-cache", "0.05", "--compile", "--compile-cache", "/tmp/c"])
    assert options_from(args) == SpeedOptions(attention="cudnn", fuse_qkv=False, compile=True, fp8=True,
                                              low_memory=True, step_cache=0.05)
    assert options_from(args).compile_cache == "/tmp/c"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA only; bench/video_bench.py runs the same checks")
def test_cuda_auto_attention_and_fp8_kernel(parts16):
    device = torch.device("cuda")
    kernel, note = choose_kernel("auto", (2, 48, 4096, 64), torch.bfloat16, device)
    assert note.startswith("attention: ") and "fastest measured here" in note
    x = torch.randn(512, 3072, device=device, dtype=torch.bfloat16)
    values, scale = quantize_rowwise(torch.randn(1024, 3072, device=device, dtype=torch.bfloat16) / 50)
    assert rel(fp8_linear(x, values, scale.reshape(1, -1), None),
               fp8_linear_reference(x, values, scale.reshape(1, -1), None)) < 4e-3


def test_tokens_major_kernels_get_and_return_the_processors_layout():
    """FlashAttention-3/4 take (B, tokens, heads, head_dim) and return (out, lse): the wrapper hands them that layout
    and gives back the processor's (B, heads, tokens, head_dim) output."""
    def tokens_major_attention(q, k, v, causal):
        assert not causal and q.shape == (2, 10, 3, 8)
        out = sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
        return out, torch.zeros(2, 3, 10)

    query, key, value = (torch.randn(2, 3, 10, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    torch.testing.assert_close(TokensMajorFlash(tokens_major_attention)(query, key, value), sdpa(query, key, value))
