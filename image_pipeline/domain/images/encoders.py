"""Encoding one prepared rendition: the format's fastest well-kept encoder, at a fixed quality number or
at the lowest quality that reaches a perceptual target, and `auto`'s choice among formats.

Encoders: baseline JPEG through simplejpeg (libjpeg-turbo), progressive or EXIF-carrying JPEG through
Pillow, WebP and AVIF through Pillow's libwebp and libavif, PNG through Pillow.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from image_pipeline.domain.images import quality as perceptual

AUTO_FORMATS = ("avif", "webp", "jpeg")
# libavif's encoder speed (0 slowest/best .. 10): 8 took a fifth to under half of the default 6's time
# for files within 3 % of its size (docs/renditions.md); a catalogue encodes many renditions.
AVIF_SPEED = 8


@dataclass(frozen=True)
class Encoded:
    format: str  # jpeg | webp | avif | png
    data: bytes
    quality: int  # the encoder's quality number used (searched, for a target)


def encode(img, fmt: str, quality: int, progressive: bool = False, exif: bytes | None = None) -> bytes:
    """`img` (RGB, or RGBA for formats with alpha) as `fmt`, metadata-free but for `exif`."""
    img.info = {}  # Pillow re-writes comments and profiles it finds in `info`
    out = io.BytesIO()
    extra = {"exif": exif} if exif else {}
    if fmt == "jpeg":
        if img.mode != "RGB":
            img = img.convert("RGB")
        if not progressive and not exif:
            import numpy as np
            import simplejpeg

            return simplejpeg.encode_jpeg(np.asarray(img), quality=quality, colorspace="RGB", colorsubsampling="420")
        img.save(out, "JPEG", quality=quality, progressive=progressive, optimize=progressive, **extra)
    elif fmt == "webp":
        img.save(out, "WEBP", quality=quality, method=4, **extra)
    elif fmt == "avif":
        img.save(out, "AVIF", quality=quality, speed=AVIF_SPEED, **extra)
    elif fmt == "png":
        img.save(out, "PNG", compress_level=6, **extra)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return out.getvalue()


def encode_rendition(
    img,
    fmt: str,
    quality: int,
    target: float | None,
    progressive: bool = False,
    exif: bytes | None = None,
    crop: int = perceptual.DEFAULT_CROP,
) -> Encoded:
    """`img` in `fmt` (`auto`: the smallest of AVIF, WebP and JPEG, each at the quality that reaches
    `target`). With a `target`, each format's quality is searched on the image's centre crop, then the
    whole image is encoded once at it; PNG is lossless and takes no quality."""
    if fmt == "auto":
        if target is None:
            raise ValueError("format auto needs a target score")
        candidates = [encode_rendition(img, f, quality, target, progressive, exif, crop) for f in AUTO_FORMATS]
        return min(candidates, key=lambda c: len(c.data))
    if target is None or fmt == "png":
        return Encoded(fmt, encode(img, fmt, quality, progressive, exif), quality)
    # The search's own score is of the crop encoded alone: the evidence is the stored output's (score_outputs).
    q, _ = perceptual.search_quality(img, target, lambda sample, q: encode(sample, fmt, q, progressive), crop)
    return Encoded(fmt, encode(img, fmt, q, progressive, exif), q)
