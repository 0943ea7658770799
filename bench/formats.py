"""Bytes at equal perceptual score: JPEG, WebP and AVIF through the product's encoders
(`domain/images/encoders.encode`), each scored with SSIMULACRA2 on the whole image.

For every photo and format, a grid of quality numbers is encoded and scored; the bytes a format needs
for a target score are interpolated between the two grid points around it (log bytes, linear in score:
the usual rate-distortion reading). The ratio to JPEG is taken per photo, and the median printed.
Encode seconds are the median over the grid of one encode of the whole image.

    .venv/bin/python -m bench.formats            # also part 7 of `make bench`
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import time
from pathlib import Path

FORMATS = ("jpeg", "webp", "avif")
GRID = (30, 40, 50, 60, 70, 80, 88, 95)
TARGETS = (70.0, 80.0)
HERE = Path(__file__).resolve().parent


def curve(img, fmt: str) -> tuple[list[tuple[float, int]], float]:
    """[(score, bytes)] over GRID for `img` in `fmt`, and the median encode time (s)."""
    from PIL import Image

    from image_pipeline.domain.images import quality
    from image_pipeline.domain.images.encoders import encode

    points, times = [], []
    for q in GRID:
        start = time.perf_counter()
        data = encode(img.copy(), fmt, q)
        times.append(time.perf_counter() - start)
        with Image.open(io.BytesIO(data)) as out:
            s = quality.score(img, out.convert("RGB"))
        points.append((s, len(data)))
    return points, statistics.median(times)


def bytes_at(points: list[tuple[float, int]], target: float) -> float | None:
    """Bytes at `target` score, interpolated on the curve; None when the grid does not reach it."""
    pts = sorted(p for p in points if p[0] is not None)
    for (s0, b0), (s1, b1) in zip(pts, pts[1:], strict=False):
        if s0 <= target <= s1 and s1 > s0:
            t = (target - s0) / (s1 - s0)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return None


def measure(photos: list[bytes], size: tuple[int, int]) -> dict:
    from PIL import Image

    per_target: dict[float, dict[str, list[float]]] = {t: {f: [] for f in FORMATS} for t in TARGETS}
    ratios: dict[float, dict[str, list[float]]] = {t: {f: [] for f in FORMATS[1:]} for t in TARGETS}
    seconds: dict[str, list[float]] = {f: [] for f in FORMATS}
    for data in photos:
        img = Image.open(io.BytesIO(data)).convert("RGB").resize(size, Image.Resampling.LANCZOS)
        curves = {}
        for fmt in FORMATS:
            curves[fmt], dt = curve(img, fmt)
            seconds[fmt].append(dt)
        for t in TARGETS:
            got = {f: bytes_at(curves[f], t) for f in FORMATS}
            for f, b in got.items():
                if b is not None:
                    per_target[t][f].append(b)
            for f in FORMATS[1:]:
                if got[f] and got["jpeg"]:
                    ratios[t][f].append(got[f] / got["jpeg"])
    return {
        "photos": len(photos),
        "size": list(size),
        "encode_s": {f: statistics.median(v) for f, v in seconds.items()},
        "targets": {
            str(t): {
                "median_bytes": {f: statistics.median(v) if v else None for f, v in per_target[t].items()},
                "ratio_to_jpeg": {f: statistics.median(v) if v else None for f, v in ratios[t].items()},
                "photos_compared": {f: len(v) for f, v in ratios[t].items()},
            }
            for t in TARGETS
        },
    }


def report(r: dict) -> str:
    lines = [f"bytes at equal SSIMULACRA2, {r['photos']} photos at {r['size'][0]}x{r['size'][1]}:"]
    lines.append(f"{'target':>7} | {'format':6} | {'median bytes':>12} | {'vs JPEG':>8} | {'encode s':>8}")
    for t, v in r["targets"].items():
        for f in FORMATS:
            b = v["median_bytes"][f]
            ratio = "1.00" if f == "jpeg" else (f"{v['ratio_to_jpeg'][f]:.2f}" if v["ratio_to_jpeg"][f] else "n/a")
            lines.append(
                f"{float(t):>7.0f} | {f:6} | {b:>12,.0f} | {ratio:>8} | {r['encode_s'][f]:>8.3f}"
                if b
                else f"{float(t):>7.0f} | {f:6} | {'not reached':>12} | {ratio:>8} | {r['encode_s'][f]:>8.3f}"
            )
    lines.append("targets (issue 16): WebP <= 0.75 and AVIF <= 0.60 of JPEG's bytes")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.photos import photo_set

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--size", default="1000x750", help="the rendition size compared (a catalogue's large image)")
    args = ap.parse_args(argv)
    w, h = (int(x) for x in args.size.split("x"))
    print(report(measure(photo_set(HERE / ".cache", args.photos), (w, h))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
