"""The tiny model tree every demo and host test uses: ComfyUI's models/ layout with built-in tiny files."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from dimx_core import tiny
from dimx_core.tiny import build_tiny_lora, build_tiny_model

TINY_MODEL = "dimx-tiny-i2v"
# name inside ComfyUI's loras folder -> (director kind, seed)
TINY_LORAS = {
    "dimx-tiny/s_orbit_left.safetensors": ("s", 1),
    "dimx-tiny/s_orbit_up.safetensors": ("s", 2),
    "dimx-tiny/t_motion.safetensors": ("t", 3),
}


def ensure_tiny_models(cache: Path) -> Path:
    """Build (once) and return a models/ tree holding the tiny model and tiny director LoRAs."""
    models = cache / "tiny-models"
    marker = models / ".complete"
    recipe = hashlib.sha1(Path(tiny.__file__).read_bytes() + Path(__file__).read_bytes()).hexdigest()
    if marker.is_file() and marker.read_text() == recipe:  # rebuilt whenever the tiny recipe changes
        return models
    if models.exists():
        shutil.rmtree(models)
    model_dir = build_tiny_model(models / "dimensionx" / TINY_MODEL, seed=0)
    for name, (kind, seed) in TINY_LORAS.items():
        build_tiny_lora(model_dir, models / "loras" / name, kind=kind, seed=seed)
    marker.write_text(recipe)
    return models
