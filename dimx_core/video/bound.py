"""The pack's diffusers/transformers modules over another model's own tensors: no second copy of the weights.

A host that already loaded CogVideoX (ComfyUI's native model, VAE and T5) keeps its modules; the pack's samplers
need diffusers' CogVideoXTransformer3DModel (its call, its attention processors, PEFT director adapters, the
speed-ups). A BoundModule is such a module built without weights (meta device) whose parameters and buffers are
the source module's tensor objects themselves, found by name. Why not call the host's forward: ComfyUI 0.33's
native CogVideoX turns RoPE off for checkpoints with learned positions (CogVideoX-5b-I2V has both) and scales the
1.0 RoPE grid by the interpolation factor, so its outputs are not the model DimensionX's directors were trained on
(tests/nodes/test_host_model.py measures it).

The host may replace a tensor object (a device move keeps the object, a weight patch may not): `rebind()` after
every placement takes whatever the source holds now.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..cogvideox import native_keys
from ..optional import require
from .request import content_key
from .single_file import transformer_config, vae_config

COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class BoundModule:
    """`module` (a diffusers or transformers model) whose tensors are `source`'s, named through `rename`
    (source name -> module name)."""

    def __init__(self, module: torch.nn.Module, source: torch.nn.Module, rename: Callable[[str], str], what: str):
        self.module, self.source, self.rename, self.what = module, source, rename, what
        # the names as built: PEFT adapters attached later move a layer's weights into its base_layer
        self.names = set(module.state_dict(keep_vars=True))
        missing = sorted(self.names - {rename(name) for name, _ in self._source_tensors()})
        if missing:
            raise ValueError(f"the host's {what} lacks {len(missing)} tensors the pack's model has "
                             f"({', '.join(missing[:3])}...): it is not the model it claims to be")
        self.rebind()

    def _source_tensors(self):
        """Parameters and persistent buffers (a non-persistent buffer is recomputed by each model itself)."""
        return self.source.state_dict(keep_vars=True).items()

    def rebind(self) -> None:
        """Point every tensor of the module at the source's current tensor of the same name."""
        for name, tensor in self._source_tensors():
            target = self.rename(name)
            if target not in self.names:
                continue
            if tensor.is_floating_point() and tensor.dtype not in COMPUTE_DTYPES:
                raise ValueError(f"the host keeps the {self.what} tensor '{name}' as {tensor.dtype}; the pack's "
                                 "samplers compute in the stored precision: load the model with weight_dtype "
                                 "'default' (fp8 storage is not supported on the host's model)")
            owner_path, _, leaf = target.rpartition(".")
            owner = self.module.get_submodule(owner_path) if owner_path else self.module
            owner = getattr(owner, "base_layer", owner)  # a PEFT-wrapped layer keeps its weights in base_layer
            if isinstance(tensor, torch.nn.Parameter) or leaf in owner._parameters:
                if not isinstance(tensor, torch.nn.Parameter):
                    tensor = torch.nn.Parameter(tensor, requires_grad=False)
                owner._parameters[leaf] = tensor
            else:
                owner._buffers[leaf] = tensor


def empty(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """A module built on the meta device: its tensors come from elsewhere."""
    accelerate = require("accelerate")
    with accelerate.init_empty_weights(include_buffers=True):
        return build().eval().requires_grad_(False)


def bound_transformer(source: torch.nn.Module, state: dict[str, torch.Tensor]) -> BoundModule:
    """diffusers' CogVideoXTransformer3DModel over the tensors of ComfyUI's native one (`source`; `state`: its
    tensors under diffusers' names, whose shapes give the configuration, as for a single file)."""
    diffusers = require("diffusers")
    config = transformer_config(state)
    module = empty(lambda: diffusers.CogVideoXTransformer3DModel.from_config(config))
    return BoundModule(module, source, native_keys.tensor_to_diffusers, "CogVideoX transformer")


def bound_vae(source: torch.nn.Module, inverts_scale: bool) -> BoundModule:
    """diffusers' AutoencoderKLCogVideoX over the tensors of ComfyUI's CogVideoX VAE (which keeps diffusers'
    names)."""
    diffusers = require("diffusers")
    config = vae_config(source.state_dict(), inverts_scale)
    module = empty(lambda: diffusers.AutoencoderKLCogVideoX.from_config(config))
    return BoundModule(module, source, lambda name: name, "CogVideoX VAE")


def weights_fingerprint(module: torch.nn.Module, values: int = 64) -> str:
    """A short digest of the first values of every tensor: tells two checkpoints of one architecture apart (for
    content keys) without reading all their bytes."""
    return content_key([tensor.detach().flatten()[:values] for tensor in module.state_dict().values()])
