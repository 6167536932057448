"""The tiny model tree every demo and host test uses: ComfyUI's models/ layout with built-in tiny files."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from dimx_core import tiny
from dimx_core.tiny import build_tiny_lora, build_tiny_model, build_tiny_t5_file
from dimx_core.video import release, sat_convert
from tests import sat_writers

TINY_MODEL = "dimx-tiny-i2v"
# a start/end-frame model in CogVideoX-Fun's InP layout (33 input channels), for the two-views workflow
TINY_INP_MODEL = "dimx-tiny-inp"
# DimensionX's 360-degree model in its 145-frame layout, converted from a tiny SAT checkpoint by the real converter
TINY_360_MODEL = "dimx-tiny-360"
# The same tiny model as single files in ComfyUI's own folders (Load Video Model's single-file mode); the T5 file
# has T5-XXL's vocabulary, so it pairs with the tokenizer ComfyUI ships.
TINY_SINGLE_FILES = {
    "diffusion_models": "dimx-tiny-i2v-transformer.safetensors",
    "vae": "dimx-tiny-i2v-vae.safetensors",
    "text_encoders": "dimx-tiny-t5-32k.safetensors",
}
# name inside ComfyUI's loras folder -> (director kind, seed)
TINY_LORAS = {
    "dimx-tiny/s_orbit_left.safetensors": ("s", 1),
    "dimx-tiny/s_orbit_up.safetensors": ("s", 2),
    "dimx-tiny/t_motion.safetensors": ("t", 3),
}


def ensure_tiny_models(cache: Path) -> Path:
    """Build (once) and return a models/ tree holding the tiny model, its start/end-frame (InP) twin, tiny director
    LoRAs (they fit both) and the tiny 360-degree model (converted from SAT, using the tiny model's VAE and T5)."""
    models = cache / "tiny-models"
    marker = models / ".complete"
    sources = (tiny, sat_writers, sat_convert, release)
    recipe = hashlib.sha1(b"".join(Path(module.__file__).read_bytes() for module in sources)
                          + Path(__file__).read_bytes()).hexdigest()
    if marker.is_file() and marker.read_text() == recipe:  # rebuilt whenever the tiny recipe changes
        return models
    if models.exists():
        shutil.rmtree(models)
    model_dir = build_tiny_model(models / "dimensionx" / TINY_MODEL, seed=0)
    build_tiny_model(models / "dimensionx" / TINY_INP_MODEL, seed=0, version="1.0-inp")
    for name, (kind, seed) in TINY_LORAS.items():
        build_tiny_lora(model_dir, models / "loras" / name, kind=kind, seed=seed)
    sat_writers.build_tiny_360_model(models / "dimensionx" / TINY_360_MODEL, base=model_dir)
    for folder, source in (("diffusion_models", "transformer/diffusion_pytorch_model.safetensors"),
                           ("vae", "vae/diffusion_pytorch_model.safetensors")):
        (models / folder).mkdir(parents=True)
        shutil.copy(model_dir / source, models / folder / TINY_SINGLE_FILES[folder])
    build_tiny_t5_file(models / "text_encoders" / TINY_SINGLE_FILES["text_encoders"])
    marker.write_text(recipe)
    return models
