"""Prompts through the host's own T5 (a ComfyUI CLIP): the states must be the pack's own T5 encoding, 226 tokens
with the padding encoded, as CogVideoX was trained; shorter states are refused, never zero-padded."""
import pytest
import torch

from dimx_core.video.conditioning import encode_prompt
from tests.core_models import core_t5_clip, small_t5

PROMPT = "an astronaut walking on the moon, cinematic light"


@pytest.fixture(scope="module")
def t5(pack, node_classes, tmp_path_factory):
    """The small T5 as the pack runs it (transformers + the tokenizer ComfyUI ships) and core CLIPs of it."""
    import transformers

    encoder = small_t5()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(pack.nodes.host.t5_tokenizer_folder()))
    folder = tmp_path_factory.mktemp("t5")
    own = encode_prompt(tokenizer, encoder, PROMPT, 226, torch.device("cpu"), torch.float32)
    return own, {pad: core_t5_clip(encoder, folder, pad) for pad in (77, 226)}


@pytest.fixture(scope="module")
def model_with_clip(node_classes, t5, tiny_model_dir, tmp_path_factory):
    import folder_paths
    import shutil

    root = tmp_path_factory.mktemp("text-models")
    shutil.copytree(tiny_model_dir, root / "tiny-text")
    folder_paths.add_model_folder_path("dimensionx", str(root), is_default=True)
    return node_classes["DimensionXLoadVideoModel"].execute("tiny-text", "fp32", host_clip=t5[1][77]).result


def test_a_77_token_host_clip_encodes_the_prompt_with_226_token_padding(model_with_clip, t5):
    model, info = model_with_clip
    own, _ = t5
    assert "text_encoder from ComfyUI's own model" in info and model.parts.text_encoder is None
    states = model.prompt_states(PROMPT, "prompt")
    assert states.shape == (1, 226, 32)
    torch.testing.assert_close(states, own, rtol=1e-5, atol=1e-6)


def test_a_226_token_core_encoding_is_the_packs_own(t5):
    own, clips = t5
    clip = clips[226]
    states = clip.encode_from_tokens(clip.tokenize(PROMPT))
    torch.testing.assert_close(states, own, rtol=1e-5, atol=1e-6)


def test_77_token_conditioning_is_refused_with_what_to_do(node_classes, model_with_clip, t5):
    model, _ = model_with_clip
    clip = t5[1][77]
    short = clip.encode_from_tokens(clip.tokenize(PROMPT))
    assert short.shape[1] == 77
    with pytest.raises(ValueError, match="positive: these T5 states have 77 tokens, but CogVideoX reads 226 .*"
                                         "connect the CLIP to Load Video Model"):
        node_classes["DimensionXDirectorSampler"].execute(
            model=model, image=torch.rand(1, 96, 144, 3), prompt="", negative_prompt="", steps=1, guidance=6.0,
            use_dynamic_cfg=True, scheduler="ddim", seed=0, positive=[[short, {}]])


def test_the_sampler_runs_on_prompts_encoded_by_the_host_clip(node_classes, model_with_clip):
    model, _ = model_with_clip
    frames, latent = node_classes["DimensionXDirectorSampler"].execute(
        model=model, image=torch.rand(1, 96, 144, 3), prompt=PROMPT, negative_prompt="", steps=1, guidance=6.0,
        use_dynamic_cfg=True, scheduler="ddim", seed=0).result[:2]
    assert frames.shape == (17, 96, 144, 3) and torch.isfinite(latent["samples"]).all()
