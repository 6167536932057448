"""Reading an image file a user names: any mode (grayscale, palette, alpha, 16-bit) becomes 8-bit RGB, and a
file that is no image says so by name."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def read_rgb(path: str | Path, what: str = "image") -> np.ndarray:
    """(H, W, 3) uint8. Transparency is dropped; 16-bit grayscale is scaled to 8 bits."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} '{path}' does not exist")
    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale, do not clip at 255
                values = np.asarray(image, dtype=np.float64)
                peak = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
                gray = np.clip(values / peak * 255.0, 0, 255).round().astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=2)
            return np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{what} '{path}' is not an image this machine can read (PNG, JPEG, WebP, BMP, TIFF): "
                         f"{err}") from err
