"""Cheap previews of latents during denoising, without running the VAE decoder.

ComfyUI previews video latents with a fixed linear map from latent channels to RGB per model family. None is
published for CogVideoX, so the map is fitted once per VAE: encode a synthetic colour clip, then solve the
least-squares map from each latent pixel to the mean colour of the pixels it covers.
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from ..cogvideox.spec import ModelSpec

_FITTED: "weakref.WeakKeyDictionary[torch.nn.Module, LatentPreviewer]" = weakref.WeakKeyDictionary()


def _colour_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """Smooth, saturated colour fields that drift over time: (1, 3, frames, H, W) in -1..1."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, 3, 4, 6, generator=generator) * 2 - 1
    return F.interpolate(coarse, size=(frames, height, width), mode="trilinear", align_corners=True)


class LatentPreviewer:
    def __init__(self, vae, spec: ModelSpec):
        device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
        frames = 1 + 2 * spec.temporal_factor
        clip = _colour_clip(frames, 16 * spec.spatial_factor, 24 * spec.spatial_factor)
        with torch.no_grad():
            latents = vae.encode(clip.to(device, dtype)).latent_dist.mean.float().cpu() * spec.vae_scaling_factor
        _, channels, latent_frames, h, w = latents.shape
        keyframes = clip[:, :, ::spec.temporal_factor][:, :, :latent_frames]
        colours = F.adaptive_avg_pool3d(keyframes, (latent_frames, h, w))
        inputs = torch.cat([latents, torch.ones_like(latents[:, :1])], dim=1)
        design = inputs.permute(0, 2, 3, 4, 1).reshape(-1, channels + 1)
        target = colours.permute(0, 2, 3, 4, 1).reshape(-1, 3)
        self.weights = torch.linalg.lstsq(design, target).solution  # (channels + 1, 3)

    @classmethod
    def for_vae(cls, vae, spec: ModelSpec) -> "LatentPreviewer":
        if vae not in _FITTED:
            _FITTED[vae] = cls(vae, spec)
        return _FITTED[vae]

    def image(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, F, C, h, w) latents -> (h, w, 3) colours in 0..1 of the middle latent frame."""
        return self.colours(latents[0, latents.shape[1] // 2])

    def colours(self, frame: torch.Tensor) -> torch.Tensor:
        """One latent frame (C, h, w) -> (h, w, 3) colours in 0..1."""
        frame = frame.float().cpu()
        rgb = torch.einsum("chw,cd->hwd", torch.cat([frame, torch.ones_like(frame[:1])]), self.weights)
        return (rgb / 2 + 0.5).clamp(0, 1)


class PreviewQueue:
    """Previews during denoising without making the host wait for the GPU every step.

    A due step's middle latent frame is copied to the host in the background; a step shows the newest copy that
    has already arrived (on the CPU: its own), and the last step waits for its own. Nothing here blocks the loop.
    """

    def __init__(self, previewer: LatentPreviewer | None, every: int, total: int):
        self.previewer, self.every, self.total = previewer, every, total
        self._pending: list[tuple[torch.Tensor, object]] = []

    def push(self, step: int, denoised: torch.Tensor) -> torch.Tensor | None:
        """step: 0-based index of the step that produced `denoised` (1, F, C, h, w). Returns a preview or None."""
        if self.previewer is None:
            return None
        last = step + 1 == self.total
        if (step + 1) % self.every == 0 or last:
            frame = denoised[0, denoised.shape[1] // 2]
            if frame.is_cuda:
                copy = frame.to("cpu", non_blocking=True)
                done = torch.cuda.Event()
                done.record()
                self._pending.append((copy, done))
            else:
                self._pending.append((frame, None))
        if last and self._pending:
            _, done = self._pending[-1]
            if done is not None:
                done.synchronize()
            self._pending = self._pending[-1:]
        arrived = [i for i, (_, done) in enumerate(self._pending) if done is None or done.query()]
        if not arrived:
            return None
        frame = self._pending[arrived[-1]][0]
        del self._pending[:arrived[-1] + 1]
        return self.previewer.colours(frame)
