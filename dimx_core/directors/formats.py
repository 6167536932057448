"""Read director LoRA files of every format seen in the wild into one canonical form.

Canonical form: for each targeted linear layer of the diffusers CogVideoX transformer (module path such as
`transformer_blocks.3.attn1.to_q`), the down matrix A (rank x in), the up matrix B (out x rank) and the
alpha the file carries, if any. The trained effect is W + (alpha / rank) * B @ A, and DimensionX's files carry
no alpha because SAT trained them with alpha = 1: their effect is W + (1 / rank) * B @ A (see `effective_alpha`).
Files written by diffusers' `save_lora_weights` or by the pack's trainer carry their alpha in the
`lora_adapter_metadata` JSON instead of in tensors; it is read from there.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..cogvideox import native_keys
from ..weights import load_state_dict

SAT_QKV = ("attn1.to_q", "attn1.to_k", "attn1.to_v")
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY: its LoraConfig as JSON
DIRECTOR_METADATA_KEY = "dimx_director"  # what the pack's trainer records: role, steps, dataset, loss


@dataclass
class LoraTarget:
    down: torch.Tensor          # A: (rank, in_features)
    up: torch.Tensor            # B: (out_features, rank)
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]


@dataclass
class LoraFile:
    path: str
    format: str
    targets: dict[str, LoraTarget] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    fingerprint: str = ""  # changes when the file changes; names its adapter inside the transformer
    other_tensors: dict[str, tuple[int, ...]] = field(default_factory=dict)  # shapes of tensors besides LoRA pairs

    @property
    def ranks(self) -> list[int]:
        return sorted({t.rank for t in self.targets.values()})

    def effective_alpha(self, target: LoraTarget) -> float:
        """alpha as trained: the file's own alpha, else 1 (SAT's default, which DimensionX used)."""
        return 1.0 if target.alpha is None else target.alpha

    def describe(self) -> str:
        alphas = {t.alpha for t in self.targets.values()}
        alpha_text = ("none (trained with alpha 1: effect = B·A / rank)" if alphas == {None}
                      else ", ".join(str(a) for a in sorted(a for a in alphas if a is not None)))
        blocks = sorted({int(m.group(1)) for name in self.targets
                         if (m := re.match(r"transformer_blocks\.(\d+)\.", name))})
        kinds = sorted({name.split(".", 2)[-1] if name.startswith("transformer_blocks.") else name
                        for name in self.targets})
        block_text = f"{blocks[0]}..{blocks[-1]} ({len(blocks)} blocks)" if blocks else "none"
        return "\n".join([
            f"file: {self.path}",
            f"format: {self.format}",
            f"targets: {len(self.targets)} layers in blocks {block_text}",
            f"layer kinds: {', '.join(kinds)}",
            f"rank: {', '.join(map(str, self.ranks))}",
            f"alpha: {alpha_text}",
            f"strength 1.0 applies W + {self._scale_text()}·B·A",
            *self._training_lines(),
        ])

    def _training_lines(self) -> list[str]:
        """What the pack's trainer recorded in the file, if it made it."""
        try:
            info = json.loads(self.metadata.get(DIRECTOR_METADATA_KEY) or "{}")
        except json.JSONDecodeError:
            return []
        return [f"trained: {info['summary']}"] if "summary" in info else []

    def _scale_text(self) -> str:
        scales = {self.effective_alpha(t) / t.rank for t in self.targets.values()}
        return ", ".join(f"{s:.6g}" for s in sorted(scales))


def _metadata_alphas(metadata: dict) -> tuple[float | None, dict[str, float]]:
    """The alpha (and per-module alpha patterns) diffusers' adapter metadata records, if the file has it."""
    raw = metadata.get(ADAPTER_METADATA_KEY)
    if not raw:
        return None, {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"its '{ADAPTER_METADATA_KEY}' metadata is not valid JSON ({err})") from err
    alpha = config.get("transformer.lora_alpha", config.get("lora_alpha"))
    patterns = config.get("transformer.alpha_pattern", config.get("alpha_pattern")) or {}
    return None if alpha is None else float(alpha), {key.lstrip("^"): float(value) for key, value in patterns.items()}


def _pattern_alpha(module: str, default: float | None, patterns: dict[str, float]) -> float | None:
    for key, value in patterns.items():
        if module == key or module.endswith("." + key) or re.fullmatch(key, module):
            return value
    return default


def _diffusers_style(state: dict, metadata: dict) -> tuple[str, dict[str, LoraTarget]] | None:
    pattern = re.compile(r"^(?:transformer\.|diffusion_model\.|model\.diffusion_model\.|base_model\.model\.)?"
                         r"(?P<module>.+?)\.(?P<which>lora_A|lora_B|lora_down|lora_up)(?:\.default)?\.weight$")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if match := pattern.match(key):
            role = "down" if match["which"] in ("lora_A", "lora_down") else "up"
            parts.setdefault(match["module"], {})[role] = tensor
    if not parts:
        return None
    native = native_keys.is_native(parts)
    metadata_alpha, patterns = _metadata_alphas(metadata)
    targets = {}
    for module, pair in parts.items():
        name = native_keys.to_diffusers(module) if native else module
        alpha_key = next((k for k in state if k.endswith(f"{module}.alpha")), None)
        alpha = float(state[alpha_key]) if alpha_key is not None else _pattern_alpha(name, metadata_alpha, patterns)
        targets[name] = _target(module, pair, alpha)
    prefixed = any(key.startswith("transformer.") for key in state)
    has_alpha = any(key.endswith(".alpha") for key in state)
    alpha_text = ("with alpha" if has_alpha else "alpha from diffusers' adapter metadata" if metadata_alpha is not None
                  else "no alpha")
    kind = "ComfyUI native keys" if native else "diffusers/PEFT keys"
    detail = "with 'transformer.' prefix" if prefixed else "without 'transformer.' prefix"
    return f"{kind} ({detail}, {alpha_text})", targets


def _kohya_style(state: dict) -> tuple[str, dict[str, LoraTarget]] | None:
    """`lora_unet_<module path with _>.lora_down/lora_up.weight` + `.alpha`: the path is matched against the
    transformer's layer names, because underscores inside names make it ambiguous."""
    pattern = re.compile(r"^lora_(?:unet|transformer)_(?P<flat>.+)\.(?P<which>lora_down|lora_up)\.weight$")
    flat_to_module = {module.replace(".", "_"): module for module in native_keys.linear_names()}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    alphas: dict[str, float] = {}
    for key, tensor in state.items():
        if match := pattern.match(key):
            flat = match["flat"]
            module = flat_to_module.get(flat) or flat_to_module.get(native_keys.flat_to_diffusers_flat(flat))
            if module is None:
                raise ValueError(f"kohya-style key '{key}' names no layer of the CogVideoX transformer")
            parts.setdefault(module, {})["down" if match["which"] == "lora_down" else "up"] = tensor
            alpha_key = key.rsplit(".", 2)[0] + ".alpha"
            if alpha_key in state:
                alphas[module] = float(state[alpha_key])
    if not parts:
        return None
    return "kohya-style (lora_down/lora_up + alpha)", {m: _target(m, p, alphas.get(m)) for m, p in parts.items()}


def _sat_style(state: dict) -> tuple[str, dict[str, LoraTarget]] | None:
    """SAT exports (CogVideo's own trainer): qkv as one layer with per-projection matrix_A.i / matrix_B.i."""
    pattern = re.compile(r"(?:^|\.)layers\.(?P<block>\d+)\.attention\.(?P<layer>query_key_value|dense)\."
                         r"matrix_(?P<which>[AB])\.(?P<index>\d+)$")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if match := pattern.search(key):
            index = int(match["index"])
            if match["layer"] == "dense":
                inner = "attn1.to_out.0"
            elif index < 3:
                inner = SAT_QKV[index]
            else:
                raise ValueError(f"SAT key '{key}' has projection index {index}; query_key_value has 3")
            module = f"transformer_blocks.{match['block']}.{inner}"
            parts.setdefault(module, {})["down" if match["which"] == "A" else "up"] = tensor
    if not parts:
        return None
    return "SAT export (query_key_value/dense matrix_A/matrix_B)", {m: _target(m, p, None) for m, p in parts.items()}


def _target(module: str, pair: dict[str, torch.Tensor], alpha: float | None) -> LoraTarget:
    if set(pair) != {"down", "up"}:
        missing = "up (lora_B)" if "up" not in pair else "down (lora_A)"
        raise ValueError(f"layer '{module}' has no {missing} matrix")
    down, up = pair["down"], pair["up"]
    if down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]:
        raise ValueError(f"layer '{module}': down {tuple(down.shape)} and up {tuple(up.shape)} are not a LoRA pair")
    for role, tensor in (("down (lora_A)", down), ("up (lora_B)", up)):
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"layer '{module}': its {role} matrix holds {bad} NaN or infinite values of "
                             f"{tensor.numel()}; the file is damaged (or was saved after training diverged), and "
                             "would turn every video black")
    if alpha is not None and not math.isfinite(alpha):
        raise ValueError(f"layer '{module}': alpha is {alpha}, not a finite number")
    return LoraTarget(down=down, up=up, alpha=alpha)


_LORA_KEY = re.compile(r"\.(lora_[AB]|lora_up|lora_down|matrix_[AB])\b|\.alpha$")  # parts of LoRA pairs


def read_lora(path: str | Path) -> LoraFile:
    """Detect the format from the keys and return canonical targets (module names of the diffusers model)."""
    state, metadata = load_state_dict(path, "LoRA file")
    name = Path(path).name
    readers = (_sat_style, _kohya_style, lambda tensors: _diffusers_style(tensors, metadata))
    for reader in readers:
        try:
            found = reader(state)
        except ValueError as err:
            raise ValueError(f"'{name}': {err}") from err
        if found:
            fmt, targets = found
            stat = Path(path).stat()
            fingerprint = hashlib.sha1(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
            others = {key: tuple(value.shape) for key, value in state.items() if not _LORA_KEY.search(key)}
            return LoraFile(path=str(path), format=fmt, targets=targets, metadata=metadata,
                            fingerprint=fingerprint.hexdigest()[:12], other_tensors=others)
    sample = ", ".join(list(state)[:3])
    raise ValueError(f"'{name}' holds no LoRA tensors (its keys look like: {sample} ...). Is it a full model "
                     "checkpoint? Director LoRAs go in models/loras; the base model goes in models/dimensionx.")
