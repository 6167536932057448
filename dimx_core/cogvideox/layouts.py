"""How an image-to-video CogVideoX transformer is told which frames are given: its conditioning layout.

The layout is read from the transformer's input channels (the config's `in_channels`, or the patch embedding's
shape in a single file), never from a file name. Every layout concatenates, on the channel axis, the noisy video
latents and then what it conditions on:

- first_frame (CogVideoX-5b-I2V, 1.5-5B-I2V, DimensionX's models): the first frame's VAE latents, zeros after it.
  16 + 16 = 32 channels. It cannot take an end frame.
- inpaint (CogVideoX-Fun's public "InP" models, V1.1-5b-InP and V1.5-5b-InP): a one-channel frame mask (1 where a
  frame is given, resized to the latent grid) and the VAE latents of the "masked video" (the given frames, -1
  elsewhere). 16 + 1 + 16 = 33 channels. Any frames may be given: the first, the last, both.
- inpaint_vae_mask (the 48-channel layout core ComfyUI 0.33 names CogVideoX_Inpaint, used by fine-tunes of the Fun
  models such as VOID): as `inpaint`, but the mask is a video of its own, encoded by the VAE. 16 + 16 + 16 = 48.

The conditioning itself is built in dimx_core/video/conditioning.py, after CogVideoX-Fun's inpaint pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass

MASKS = ("none", "resized", "encoded")   # no mask; one channel resized to the latent grid; VAE latents of the mask
# CogVideoX-Fun's inference noise on the given frames (its pipeline's noise_aug_strength) for the models whose config
# says add_noise_in_inpaint_model: they were trained with noise of sigma exp(N(-3, 0.5)) there.
REFERENCE_NOISE = 0.0563


@dataclass(frozen=True)
class ConditioningLayout:
    name: str
    mask: str            # one of MASKS
    end_frame: bool      # whether an end frame (or any later frame) can be given
    models: str          # which public models use it

    def channels(self, latent_channels: int) -> int:
        """The transformer's in_channels for this layout."""
        mask = {"none": 0, "resized": 1, "encoded": latent_channels}[self.mask]
        return 2 * latent_channels + mask


LAYOUTS = {layout.name: layout for layout in (
    ConditioningLayout("first_frame", "none", False, "CogVideoX-5b-I2V, CogVideoX1.5-5B-I2V, DimensionX"),
    ConditioningLayout("inpaint", "resized", True, "CogVideoX-Fun V1.1-5b-InP, V1.5-5b-InP"),
    ConditioningLayout("inpaint_vae_mask", "encoded", True, "48-channel Fun fine-tunes (ComfyUI's CogVideoX_Inpaint)"),
)}


def layout_for(in_channels: int, latent_channels: int) -> ConditioningLayout | None:
    """The layout a transformer of `in_channels` inputs has, for a VAE of `latent_channels`; None if none fits."""
    return next((layout for layout in LAYOUTS.values() if layout.channels(latent_channels) == in_channels), None)


def interpolating_layouts(latent_channels: int = 16) -> str:
    """Names the layouts that take an end frame, with their channel counts, for error messages."""
    return ", ".join(f"{layout.models} ({layout.channels(latent_channels)} input channels)"
                     for layout in LAYOUTS.values() if layout.end_frame)
