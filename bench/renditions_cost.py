"""Encode time and size per output format on two 1600x1200 samples (a noisy photo-like image, the worst
case for every encoder, and a smooth gradient): what docs/renditions.md quotes.

    .venv/bin/python -m bench.renditions_cost
"""

from __future__ import annotations

import io
import time

from PIL import Image

from tests.support.inputs import make_image

ENCODERS = [
    ("avif speed 6 (default)", "AVIF", {"quality": 80, "speed": 6}),
    ("avif speed 8 (ours)", "AVIF", {"quality": 80, "speed": 8}),
    ("webp method 4", "WEBP", {"quality": 80, "method": 4}),
    ("jpeg baseline", "JPEG", {"quality": 80}),
    ("jpeg progressive", "JPEG", {"quality": 80, "progressive": True, "optimize": True}),
]


def samples() -> dict[str, Image.Image]:
    noisy = Image.open(io.BytesIO(make_image("JPEG", (1600, 1200), seed=3))).convert("RGB")
    smooth = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
    return {"noisy": noisy, "smooth": smooth}


def main() -> None:
    for name, img in samples().items():
        for label, fmt, kw in ENCODERS:
            times = []
            for _ in range(3):
                out = io.BytesIO()
                start = time.perf_counter()
                img.save(out, fmt, **kw)
                times.append(time.perf_counter() - start)
            print(f"{name:6} {label:24} {len(out.getvalue()):>9,} B  {min(times):7.3f} s (best of 3)")


if __name__ == "__main__":
    main()
