"""What a CogVideoX image-to-video checkpoint can do, read from its configs (never from file names)."""
from __future__ import annotations

from dataclasses import dataclass

from .layouts import LAYOUTS, REFERENCE_NOISE, ConditioningLayout, interpolating_layouts, layout_for

# The published CogVideoX-5b-I2V (1.0) transformer config; the benchmark builds it with random weights.
COGVIDEOX_5B_I2V_TRANSFORMER = dict(
    activation_fn="gelu-approximate", attention_bias=True, attention_head_dim=64, dropout=0.0,
    flip_sin_to_cos=True, freq_shift=0, in_channels=32, max_text_seq_length=226,
    norm_elementwise_affine=True, norm_eps=1e-5, num_attention_heads=48, num_layers=42, out_channels=16,
    patch_size=2, sample_frames=49, sample_height=60, sample_width=90, spatial_interpolation_scale=1.875,
    temporal_compression_ratio=4, temporal_interpolation_scale=1.0, text_embed_dim=4096, time_embed_dim=512,
    timestep_activation_fn="silu", use_learned_positional_embeddings=True, use_rotary_positional_embeddings=True)

# The published CogVideoX-5b-I2V VAE config (AutoencoderKLCogVideoX) and T5-XXL encoder config (T5EncoderModel,
# v1.1 "gated-gelu"): the benchmark builds them with random weights for the whole image-to-video run.
COGVIDEOX_5B_I2V_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 256, 512], down_block_types=["CogVideoXDownBlock3D"] * 4,
    force_upcast=True, in_channels=3, latent_channels=16, layers_per_block=3, norm_eps=1e-6, norm_num_groups=32,
    out_channels=3, sample_height=480, sample_width=720, scaling_factor=0.7, temporal_compression_ratio=4,
    up_block_types=["CogVideoXUpBlock3D"] * 4, use_post_quant_conv=False, use_quant_conv=False)
T5_XXL_ENCODER = dict(
    d_ff=10240, d_kv=64, d_model=4096, dropout_rate=0.0, feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6,
    num_heads=64, num_layers=24, relative_attention_max_distance=128, relative_attention_num_buckets=32,
    vocab_size=32128, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)

# The published scheduler config of CogVideoX-5b-I2V: v-prediction, zero-terminal-SNR, trailing spacing.
COGVIDEOX_5B_I2V_SCHEDULER = dict(
    beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, clip_sample=False, clip_sample_range=1.0,
    num_train_timesteps=1000, prediction_type="v_prediction", rescale_betas_zero_snr=True, sample_max_value=1.0,
    set_alpha_to_one=True, snr_shift_scale=1.0, steps_offset=0, timestep_spacing="trailing", trained_betas=None)


@dataclass(frozen=True)
class ModelSpec:
    """Geometry and conditioning of one image-to-video checkpoint.

    `version` is "1.0" (5b-I2V: learned positional embeddings, one size only, image latents scaled by the
    VAE factor) or "1.5" (temporal patches, `ofs` embedding, image latents scaled by its inverse). `layout` names
    how the given frames enter the transformer (layouts.py); `reference_noise` is the noise the inpaint layouts'
    given frames get before encoding (0: none).
    """
    version: str
    width: int
    height: int
    frames: int
    latent_channels: int
    spatial_factor: int
    temporal_factor: int
    vae_scaling_factor: float
    fixed_size: bool
    text_tokens: int
    uses_ofs: bool
    layout: str = "first_frame"
    reference_noise: float = 0.0

    @property
    def takes_end_frame(self) -> bool:
        return LAYOUTS[self.layout].end_frame

    @property
    def latent_frames(self) -> int:
        return (self.frames - 1) // self.temporal_factor + 1

    @property
    def image_latent_scale(self) -> float:
        return 1.0 / self.vae_scaling_factor if self.version == "1.5" else self.vae_scaling_factor

    def describe(self) -> str:
        kind = "image-to-video" if self.layout == "first_frame" else f"start/end-frame ({self.layout} layout)"
        return (f"CogVideoX {self.version} {kind}, {self.width}x{self.height}, {self.frames} frames"
                f"{' (fixed size)' if self.fixed_size else ''}")


def conditioning_layout(in_channels: int, latent_channels: int = 16) -> ConditioningLayout:
    """The layout of a transformer with `in_channels` inputs; a text-to-video or unknown one is refused."""
    layout = layout_for(in_channels, latent_channels)
    if layout is None and in_channels == latent_channels:
        raise ValueError(
            f"this transformer takes {in_channels} input channels, but an image-to-video CogVideoX model takes "
            f"{2 * latent_channels} (video latents + image latents): it looks like a text-to-video checkpoint. "
            "DimensionX needs CogVideoX-5b-I2V.")
    if layout is None:
        raise ValueError(
            f"this transformer takes {in_channels} input channels, which matches no CogVideoX image-to-video layout "
            f"known to the pack: {2 * latent_channels} (CogVideoX-5b-I2V, first frame) or "
            f"{interpolating_layouts(latent_channels)}")
    return layout


def spec_from_configs(transformer_config: dict, vae_config: dict) -> ModelSpec:
    """What a checkpoint makes, from its transformer and VAE configs (the raw config.json contents: CogVideoX-Fun
    folders say `add_noise_in_inpaint_model` there, which diffusers' model config drops)."""
    latent_channels = vae_config.get("latent_channels", 16)
    layout = conditioning_layout(transformer_config["in_channels"], latent_channels)
    spatial = 2 ** (len(vae_config.get("block_out_channels", (0, 0, 0, 0))) - 1)
    is_15 = transformer_config.get("patch_size_t") is not None
    temporal = int(vae_config.get("temporal_compression_ratio", 4))
    frames = transformer_config["sample_frames"]
    latent_frames = (frames - 1) // temporal + 1
    if layout.end_frame and is_15 and latent_frames % transformer_config["patch_size_t"]:
        # CogVideoX-Fun 1.5 denoises latent frames in pairs and lengthens the video to fill the last pair
        frames += (transformer_config["patch_size_t"] - latent_frames % transformer_config["patch_size_t"]) * temporal
    noised = layout.end_frame and transformer_config.get("add_noise_in_inpaint_model", False)
    return ModelSpec(
        version="1.5" if is_15 else "1.0",
        width=transformer_config["sample_width"] * spatial,
        height=transformer_config["sample_height"] * spatial,
        frames=frames,
        latent_channels=latent_channels,
        spatial_factor=spatial,
        temporal_factor=temporal,
        vae_scaling_factor=float(vae_config["scaling_factor"]),
        fixed_size=bool(transformer_config.get("use_learned_positional_embeddings", False)),
        text_tokens=int(transformer_config.get("max_text_seq_length", 226)),
        uses_ofs=transformer_config.get("ofs_embed_dim") is not None,
        layout=layout.name,
        reference_noise=REFERENCE_NOISE if noised else 0.0,
    )
