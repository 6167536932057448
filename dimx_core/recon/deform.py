"""The time-dependent part of a 4D scene: a deformation field over canonical Gaussians (HexPlane / K-Planes style).

The field maps a canonical position x and a time t to offsets of each Gaussian's position, rotation and log scale
(opacity and colour stay fixed, as in 4DGaussians). Its features come from six 2D feature planes, xy, xz, yz
(space) and xt, yt, zt (space-time), at a few spatial resolutions, read with bilinear interpolation
(`grid_sample`) and multiplied together per resolution, the Hadamard product of K-Planes and 4DGaussians: a
feature only changes over time where the time planes depart from 1. The resolutions' features are concatenated
and a small MLP decodes the offsets. Plain PyTorch, so it runs wherever the rasterizer runs.

The reference time is the canonical time: the offsets are D(x, t) - D(x, t_ref), exactly zero at t_ref whatever
the field learns. The canonical Gaussians are therefore the scene at the reference time (what the static warm-up
fits), and a saved scene's canonical PLY is that frame's scene. Time planes start at 1, so right after
construction the field is the identity at every time (to float rounding between time knots).
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..files import atomic_path
from .gaussians import Gaussians

PLANE_AXES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # xy xz yz xt yt zt (axis 3 is time)
OFFSET_CHANNELS = 9  # position (3), rotation (3: vector part of a delta quaternion), log scale (3)
CONFIG_FORMAT = "dimx-hexplane-field/1"


@dataclass(frozen=True)
class FieldConfig:
    """Everything needed to rebuild a field from its weights (written as JSON beside them)."""
    bounds_min: tuple[float, float, float]   # the box of space the planes cover; outside it, the border value
    bounds_max: tuple[float, float, float]
    time_range: tuple[float, float] = (0.0, 1.0)
    reference_time: float = 0.0               # offsets are zero here: the canonical Gaussians' time
    resolutions: tuple[int, ...] = (32, 64)   # spatial plane sizes, one set of six planes per entry
    time_resolution: int = 16                 # knots along time
    features: int = 16                        # channels per plane
    hidden: int = 64                          # MLP width
    layers: int = 2                           # hidden layers of the MLP

    def __post_init__(self) -> None:
        low, high = torch.tensor(self.bounds_min), torch.tensor(self.bounds_max)
        if low.shape != (3,) or high.shape != (3,) or not bool((high > low).all()):
            raise ValueError(f"field bounds must be two 3-vectors with max > min, got {self.bounds_min}, "
                             f"{self.bounds_max}")
        start, end = self.time_range
        if not end > start:
            raise ValueError(f"time_range must run forward (start < end), got {self.time_range}")
        if not start <= self.reference_time <= end:
            raise ValueError(f"reference_time {self.reference_time} lies outside the time range {self.time_range}")
        if min(self.resolutions, default=0) < 2 or self.time_resolution < 2:
            raise ValueError(f"plane resolutions must be at least 2, got {self.resolutions} and "
                             f"{self.time_resolution} along time")
        if self.features < 1 or self.hidden < 1 or self.layers < 1:
            raise ValueError("features, hidden and layers must be positive")

    def as_json(self) -> dict:
        return {"format": CONFIG_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> "FieldConfig":
        if data.get("format") != CONFIG_FORMAT:
            raise ValueError(f"not a DimensionX deformation-field config (format {data.get('format')!r}, expected "
                             f"{CONFIG_FORMAT!r})")
        fields = {key: value for key, value in data.items() if key != "format"}
        for key in ("bounds_min", "bounds_max", "time_range", "resolutions"):
            fields[key] = tuple(fields[key])
        return cls(**fields)


class DeformationField(torch.nn.Module):
    """D(x, t) - D(x, t_ref): offsets of position (world units), rotation and log scale per Gaussian."""

    def __init__(self, config: FieldConfig, *, seed: int = 0):
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(seed)
        planes = []
        for resolution in config.resolutions:
            for first, second in PLANE_AXES:
                width = resolution if first < 3 else config.time_resolution
                height = resolution if second < 3 else config.time_resolution
                if second == 3:  # space-time planes: 1 = "no change over time" until the fit says otherwise
                    planes.append(torch.nn.Parameter(torch.ones(1, config.features, height, width)))
                else:            # K-Planes' spatial initialisation
                    planes.append(torch.nn.Parameter(
                        torch.empty(1, config.features, height, width).uniform_(0.1, 0.5, generator=generator)))
        self.planes = torch.nn.ParameterList(planes)
        sizes = [config.features * len(config.resolutions)] + [config.hidden] * config.layers + [OFFSET_CHANNELS]
        layers: list[torch.nn.Module] = []
        for index, (inputs, outputs) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = index == len(sizes) - 2
            linear = torch.nn.Linear(inputs, outputs, bias=not last)  # a last bias would cancel in D(t) - D(t_ref)
            bound = 1.0 / math.sqrt(inputs)  # torch's default Linear init, drawn from the seeded generator
            with torch.no_grad():
                linear.weight.uniform_(-bound, bound, generator=generator)
                if linear.bias is not None:
                    linear.bias.uniform_(-bound, bound, generator=generator)
            layers += [linear] if last else [linear, torch.nn.ReLU()]
        self.decoder = torch.nn.Sequential(*layers)
        self.register_buffer("low", torch.tensor(config.bounds_min, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(config.bounds_max, dtype=torch.float32))

    def _time_coordinate(self, t: float) -> float:
        start, end = self.config.time_range
        return 2.0 * (min(max(float(t), start), end) - start) / (end - start) - 1.0

    def _sample(self, plane: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(P, features) bilinear reads of `plane` at (u, v) in [-1, 1] (u along its width, v along its height)."""
        grid = torch.stack([u, v], dim=-1)[None, None]                    # (1, 1, P, 2)
        return F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, :, 0].T

    def features(self, means: torch.Tensor, times: list[float]) -> list[torch.Tensor]:
        """One (P, features x resolutions) tensor per time: space planes shared, space-time planes per time."""
        unit = (2.0 * (means - self.low) / (self.high - self.low) - 1.0).clamp(-1.0, 1.0)
        per_time = [[] for _ in times]
        planes = iter(self.planes)
        for _ in self.config.resolutions:
            spatial = None
            for first, second in PLANE_AXES[:3]:
                value = self._sample(next(planes), unit[:, first], unit[:, second])
                spatial = value if spatial is None else spatial * value
            temporal = [next(planes) for _ in PLANE_AXES[3:]]
            for index, t in enumerate(times):
                along_time = torch.full_like(unit[:, 0], self._time_coordinate(t))
                value = spatial
                for plane, (first, _) in zip(temporal, PLANE_AXES[3:]):
                    value = value * self._sample(plane, unit[:, first], along_time)
                per_time[index].append(value)
        return [torch.cat(values, dim=-1) for values in per_time]

    def forward(self, means: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Offsets at time `t` for canonical `means` (P, 3): position (P, 3) in world units, rotation (P, 3)
        as the vector part of a delta quaternion (1, v), log scale (P, 3). All zero at the reference time."""
        at_t, at_reference = self.features(means, [t, self.config.reference_time])
        # two calls of one shape, not one batched call: equal inputs then give bit-equal outputs (a GEMM may
        # round a row differently depending on where it sits in the batch), so the offsets are exactly zero at t_ref
        offsets = self.decoder(at_t) - self.decoder(at_reference)
        half_size = 0.5 * (self.high - self.low)
        return offsets[:, :3] * half_size, offsets[:, 3:6], offsets[:, 6:9]

    def regularisation(self, smoothness_weight: float, total_variation_weight: float) -> torch.Tensor:
        """K-Planes' regularisers: total variation over every plane (neighbouring cells agree) and second
        differences along time on the space-time planes (motion is smooth in time)."""
        total = self.planes[0].new_zeros(())
        for index, plane in enumerate(self.planes):
            total = total + total_variation_weight * ((plane[..., 1:, :] - plane[..., :-1, :]).square().mean()
                                                      + (plane[..., :, 1:] - plane[..., :, :-1]).square().mean())
            if PLANE_AXES[index % len(PLANE_AXES)][1] == 3 and plane.shape[-2] > 2:
                second = plane[..., 2:, :] - 2 * plane[..., 1:-1, :] + plane[..., :-2, :]
                total = total + smoothness_weight * second.square().mean()
        return total


def compose_rotation(delta: torch.Tensor, quats_wxyz: torch.Tensor) -> torch.Tensor:
    """The unit quaternion (1, delta) / |(1, delta)| applied after `quats_wxyz` (a world-frame turn)."""
    norm = torch.sqrt(1.0 + delta.square().sum(dim=-1, keepdim=True))
    w1, (x1, y1, z1) = 1.0 / norm[:, 0], (delta / norm).unbind(-1)
    w2, x2, y2, z2 = quats_wxyz.unbind(-1)
    return torch.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], dim=-1)


def deform(field: DeformationField, means: torch.Tensor, quats_wxyz: torch.Tensor, log_scales: torch.Tensor,
           t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical means, rotations and log scales moved to time `t` (differentiable, for the fit)."""
    d_means, d_rotation, d_log_scales = field(means, t)
    return means + d_means, compose_rotation(d_rotation, quats_wxyz), log_scales + d_log_scales


@dataclass
class Deformation:
    """What a 4D scene carries in `Gaussians.deformation`: the field and the times the scene was fitted at."""
    field: DeformationField
    times: tuple[float, ...]   # fitted times, ascending, within field.config.time_range (one PLY each on save)

    def __post_init__(self) -> None:
        self.times = tuple(float(t) for t in self.times)
        start, end = self.field.config.time_range
        if not self.times or any(not start - 1e-9 <= t <= end + 1e-9 for t in self.times):
            raise ValueError(f"a deformation needs fitted times inside its time range {self.field.config.time_range}, "
                             f"got {self.times}")

    @property
    def reference_time(self) -> float:
        return self.field.config.reference_time

    def on(self, device: torch.device | str) -> "Deformation":
        """This deformation with its field on `device` (a copy when it moves: scenes are shared values)."""
        device = torch.device(device)
        if self.field.low.device == device:
            return self
        return replace(self, field=copy.deepcopy(self.field).to(device))

    def describe(self) -> str:
        config = self.field.config
        return (f"deformation field: HexPlane {len(config.resolutions)}x6 planes at {list(config.resolutions)} "
                f"(time {config.time_resolution}), {config.features} features, MLP {config.layers}x{config.hidden}; "
                f"{len(self.times)} times in [{config.time_range[0]:g}, {config.time_range[1]:g}], canonical = "
                f"t {config.reference_time:g}")


def gaussians_at(scene: Gaussians, t: float) -> Gaussians:
    """The static scene at time `t` (clamped to the field's time range): a plain Gaussians value with the
    scene's cameras and no deformation. A scene without deformation is the same at every time."""
    if scene.deformation is None:
        return scene
    deformation = scene.deformation.on(scene.means.device)
    with torch.no_grad():
        means, quats, log_scales = deform(deformation.field, scene.means, scene.quats_wxyz, scene.log_scales, t)
    return replace(scene, means=means, quats_wxyz=quats, log_scales=log_scales, deformation=None)


def save_field(weights_path: str | Path, config_path: str | Path, deformation: Deformation) -> None:
    """The field's tensors as safetensors and its config (with the fitted times) as JSON, each written whole."""
    from safetensors.torch import save_file

    tensors = {name: value.detach().to("cpu", torch.float32).contiguous()
               for name, value in deformation.field.state_dict().items()}
    with atomic_path(weights_path) as part:
        save_file(tensors, str(part), metadata={"format": CONFIG_FORMAT})
    config = {**deformation.field.config.as_json(), "times": list(deformation.times)}
    with atomic_path(config_path) as part:
        part.write_text(json.dumps(config, indent=1))


def parameter_shapes(config: FieldConfig) -> dict[str, tuple[int, ...]]:
    """The shapes of a field's state_dict for `config`, computed without allocating it (a config can claim
    planes far larger than memory; its weights file is checked against these shapes first)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (resolution, (first, second)) in enumerate(
            (resolution, axes) for resolution in config.resolutions for axes in PLANE_AXES):
        width = resolution if first < 3 else config.time_resolution
        height = resolution if second < 3 else config.time_resolution
        shapes[f"planes.{index}"] = (1, config.features, height, width)
    sizes = [config.features * len(config.resolutions)] + [config.hidden] * config.layers + [OFFSET_CHANNELS]
    for layer, (inputs, outputs) in enumerate(zip(sizes[:-1], sizes[1:])):
        name = f"decoder.{2 * layer}"  # Linear, ReLU, Linear, ...
        shapes[f"{name}.weight"] = (outputs, inputs)
        if layer < len(sizes) - 2:
            shapes[f"{name}.bias"] = (outputs,)
    shapes["low"] = shapes["high"] = (3,)
    return shapes


def load_field(weights_path: str | Path, config_path: str | Path) -> Deformation:
    """A saved field: its config is read and its claimed tensor shapes checked against the weights file's own
    header before anything is allocated, so a damaged or hostile config cannot ask for gigabytes."""
    from safetensors import SafetensorError, safe_open

    weights_path, config_path = Path(weights_path), Path(config_path)
    try:
        data = json.loads(config_path.read_text())
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
        times = data.pop("times", None)
        if not times or not isinstance(times, list):
            raise ValueError("it lists no fitted times")
        config = FieldConfig.from_json(data)
    except (OSError, ValueError, TypeError, KeyError) as err:
        reason = f"missing key {err}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise ValueError(f"'{config_path}' is not a readable DimensionX deformation config ({reason})") from err
    expected = parameter_shapes(config)
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            found = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
            if found != expected:
                differ = sorted(name for name in set(found) | set(expected) if found.get(name) != expected.get(name))
                raise ValueError(f"'{weights_path}' does not match its config '{config_path}': tensors "
                                 f"{differ[:6]}{' ...' if len(differ) > 6 else ''} differ in name or shape (the "
                                 "config claims " + ", ".join(f"{name} {expected.get(name)}" for name in differ[:2])
                                 + "); the folder mixes files of different scenes or one is damaged")
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (OSError, SafetensorError) as err:
        raise ValueError(f"'{weights_path}' is not a readable safetensors file ({type(err).__name__}: {err}); "
                         "the deformation field is truncated or damaged") from err
    field = DeformationField(config)
    field.load_state_dict(tensors)
    field.requires_grad_(False)
    return Deformation(field.eval(), tuple(times))
