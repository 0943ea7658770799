"""Perceptual quality of a rendition: SSIMULACRA2 on a centre crop, and the search for the lowest
encoder quality that reaches a target score.

SSIMULACRA2 (the metric libjxl's authors built to rank codecs; PyPI `ssimulacra2`, a NumPy/SciPy port
of the reference) is on one scale for every format, which the encoders' own quality numbers are not:
JPEG q80, WebP q80 and AVIF q80 are three different qualities. Its scale: 90 and above visually
lossless, 80 very high, 70 high, 50 medium, 30 low.

It costs about 1 s for a whole 1000×750 pair on this machine, too much to run on every output
(docs/renditions.md has the figures), so both uses here look at a centre crop of `crop` pixels a side
(a product photo's subject is in its middle), scored on a sample of a request's URLs and, for a
rendition with a `target`, used for the per-image quality search.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

DEFAULT_CROP = 256
# SSIMULACRA2 needs 8 pixels at its coarsest of 6 scales; below this a crop is too small to judge.
MIN_SIDE = 16
QUALITY_RANGE = (20, 95)  # the search's bounds: below 20 no format looks like a photo, above 95 only bytes grow
QUALITY_STEP = 3  # the search stops when the bounds are this close: a step below is invisible


@functools.cache
def load() -> None:
    """Import the metric (and SciPy under it) once per process, ahead of the first score."""
    import ssimulacra2  # noqa: F401


def centre_crop(img, side: int):  # PIL.Image -> PIL.Image
    """The centre `side`×`side` of `img` (all of it along a shorter side)."""
    w, h = img.size
    cw, ch = min(w, side), min(h, side)
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def score(reference, distorted) -> float | None:
    """SSIMULACRA2 of `distorted` against `reference` (PIL images of one size; alpha is flattened the
    way the metric does, on grey). None when the images are too small to score."""
    from ssimulacra2 import compute_ssimulacra2

    if reference.size != distorted.size:
        raise ValueError(f"sizes differ: {reference.size} vs {distorted.size}")
    if min(reference.size) < MIN_SIDE:
        return None
    # The package reads images through Image.open; an uncompressed BMP in memory costs microseconds.
    a, b = io.BytesIO(), io.BytesIO()
    reference.convert("RGB").save(a, "BMP")
    distorted.convert("RGB").save(b, "BMP")
    a.seek(0)
    b.seek(0)
    return round(float(compute_ssimulacra2(a, b)), 2)


def score_encoded(reference, data: bytes, crop: int = DEFAULT_CROP) -> float | None:
    """The score of encoded `data` (any format Pillow reads) against the image it was made from,
    both cut to their centre crop."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as out:
        out.load()
        if out.size != reference.size:
            raise ValueError(f"output is {out.size}, its reference {reference.size}")
        return score(centre_crop(reference, crop), centre_crop(out, crop))


def search_quality(
    img, target: float, encode: Callable[[object, int], bytes], crop: int = DEFAULT_CROP
) -> tuple[int, float | None]:
    """The lowest quality (within QUALITY_STEP) at which `encode(crop of img, q)` scores `target` or
    more, with that score; the range's top when even that misses. Bisection over the crop only, so a
    large image costs what its crop costs (about five encodes and scores of a 256-pixel square)."""
    sample = centre_crop(img, crop)
    if min(sample.size) < MIN_SIDE:
        return QUALITY_RANGE[1], None
    lo, hi = QUALITY_RANGE
    best_q, best_score = hi, score_encoded(sample, encode(sample, hi), crop)
    if best_score is not None and best_score < target:
        return best_q, best_score  # even the top misses: the best this format can do here
    while hi - lo > QUALITY_STEP:
        mid = (lo + hi) // 2
        s = score_encoded(sample, encode(sample, mid), crop)
        if s is not None and s >= target:
            hi, best_q, best_score = mid, mid, s
        else:
            lo = mid
    return best_q, best_score
