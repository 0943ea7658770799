"""Encode time and size per output format on two 1600x1200 samples (a noisy photo-like image, the worst
case for every encoder, and a smooth gradient), then the cost of a target score per format: what
docs/renditions.md quotes.

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
    targets()


def targets() -> None:
    """A target score per format (the quality searched on the centre crop), through `render_all` with the
    output's own crop scored, on a bench photo made at 1600x1200 and rendered within 1000x750 (as
    `bench.formats` compares); a fixed q80 JPEG beside it. Seconds are the render's alone (the first
    line carries SciPy's import); the score is the stored output's own, measured after."""
    from bench.photos import make_photo
    from image_pipeline.domain.images.renditions import Rendition, render_all, score_outputs

    photo = make_photo(1, (1600, 1200), quality=95)
    box = {"width": 1000, "height": 750}
    cases = [Rendition("fixed", "jpeg", 80, **box)]
    cases += [Rendition(f, f, target=70, **box) for f in ("jpeg", "jpeg", "webp", "avif", "auto")]
    for r in cases:
        start = time.perf_counter()
        [out] = render_all(photo, [r])
        dt = time.perf_counter() - start
        [score] = score_outputs(photo, (r,), [(out.data, False)], 256)
        what = f"q{r.quality} fixed" if r.target is None else f"target {r.target:g}"
        print(f"photo  {r.format:5} {what:12} -> {out.format} q{out.quality:<3} {len(out.data):>9,} B  "
              f"score {score}  {dt:6.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
