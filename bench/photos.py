"""Photo-like test images: smooth shapes and gradients plus sensor-like noise, saved as q90 JPEGs.

Noise matters: a flat synthetic image compresses to almost nothing and codes far faster than a photo.
"""

from __future__ import annotations

import io
from pathlib import Path


def make_photo(seed: int, size: tuple[int, int] = (1600, 1200), noise: float = 6.0, quality: int = 90) -> bytes:
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):  # a few broad gradients and blobs per channel
        img[..., c] = 90 + 60 * np.sin(x / rng.uniform(150, 600) + rng.uniform(0, 6)) * np.cos(
            y / rng.uniform(150, 600) + rng.uniform(0, 6)
        )
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(40, 300)
        mask = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
        img[mask] = img[mask] * 0.4 + rng.uniform(0, 255, 3) * 0.6
    smooth = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2))
    arr = np.asarray(smooth, np.float32) + rng.normal(0, noise, (h, w, 3))  # sensor noise
    out = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def photo_set(cache: Path, n_distinct: int = 16, size: tuple[int, int] = (1600, 1200)) -> list[bytes]:
    """`n_distinct` photos, cached on disk (generation costs a few seconds)."""
    cache.mkdir(parents=True, exist_ok=True)
    photos = []
    for i in range(n_distinct):
        path = cache / f"photo-{size[0]}x{size[1]}-{i}.jpg"
        if not path.exists():
            path.write_bytes(make_photo(i, size))
        photos.append(path.read_bytes())
    return photos
