"""Recompress one image: sniff the real format, refuse bombs before decoding, fix orientation, convert
to sRGB through the embedded ICC profile (colour.py), flatten alpha on white, and write a
metadata-free (untagged sRGB) baseline JPEG.

Two codec paths give the same result class (RGB baseline JPEG, 4:2:0, same quality, metadata stripped):
- JPEG -> JPEG through simplejpeg (libjpeg-turbo, no PIL image objects in between: faster than Pillow,
  docs/performance.md), when the input is plain: 8-bit YCbCr or greyscale, EXIF orientation 1 or
  absent, no downscaling asked, and an embedded profile that is RGB (converted to sRGB after decoding)
  or sRGB's grey. The header is read by simplejpeg, EXIF and ICC by walking the marker segments
  (jpeg_markers.py): no pixel is decoded to decide.
- Pillow for everything else (PNG, WebP, GIF, TIFF, BMP, CMYK/YCCK JPEG, rotated JPEG, 12-bit, scaled
  output with DCT scaling via `draft`), and for any JPEG the fast decoder rejects (so error messages
  come from one place).

Pure function of bytes in, bytes out, so it runs in a thread or process pool and is tested directly.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from image_pipeline.domain.images.colour import (
    DEFAULT_MAX_ICC_BYTES,
    WHITE,
    convert_rgb_array,
    to_srgb,
    transform_for,
)
from image_pipeline.domain.images.jpeg_markers import jpeg_exif, jpeg_icc, jpeg_scan_count, kept_jpeg
from image_pipeline.domain.telemetry.metrics import timed

DEFAULT_MAX_SCANS = 32


class ImageError(ValueError):
    """This input cannot be turned into a JPEG; the message says why, in words."""


@dataclass(frozen=True)
class Recompressed:
    data: bytes
    width: int
    height: int
    source_format: str
    # The input JPEG was already smaller than our output: `data` is its coded image rebuilt from the
    # segments a decoder needs (see `kept_jpeg`), never the input's bytes as they came.
    kept_original: bool = False


def sniff_format(data: bytes) -> str | None:
    """The image format from its magic bytes (not from the URL or Content-Type, which lie)."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:2] == b"BM":
        return "BMP"
    if head[4:8] == b"ftyp":
        return _iso_bmff_format(data)
    return None


_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


def _iso_bmff_format(data: bytes) -> str | None:
    """HEIF (phones' HEIC) or AVIF from the `ftyp` box's major and compatible brands (`mif1` alone
    says only "an image file": the codec brands decide)."""
    size = int.from_bytes(data[:4], "big")
    if not 16 <= size <= min(len(data), 4096):
        return None
    brands = {data[8:12]} | {data[i : i + 4] for i in range(16, size - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


def register_heif() -> None:
    """Pillow opens HEIF through pillow-heif's plugin (libheif), registered once per process."""
    global _heif_registered
    if not _heif_registered:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _heif_registered = True


_heif_registered = False


def _describe_unknown(data: bytes) -> str:
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")):
        return "SVG/XML is not a supported image format"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "the URL returned an HTML page, not an image"
    if head.startswith(b"%pdf"):
        return "PDF is not a supported image format"
    if not data:
        return "empty response body"
    return "unrecognised file format (accepted: JPEG, PNG, WebP, GIF, TIFF, BMP, HEIF/HEIC, AVIF)"


def _too_many_pixels(w: int, h: int, max_pixels: int) -> ImageError:
    return ImageError(f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}")


def _check_scans(data: bytes, max_scans: int) -> None:
    scans = jpeg_scan_count(data, max_scans)
    if scans > max_scans:
        # libjpeg-turbo's documented DoS: every scan of a progressive JPEG costs a pass over the image.
        raise ImageError(f"JPEG has more than {max_scans} scans (progressive scan bomb refused before decoding)")


def _exif_orientation(exif: bytes) -> int:
    try:
        return int(_load_exif(exif).get(0x0112, 1))
    except Exception:  # unreadable EXIF: let Pillow handle the image
        return -1


def _load_exif(exif: bytes):
    from PIL import Image

    e = Image.Exif()
    e.load(b"Exif\x00\x00" + exif)
    return e


def recompress_fast_jpeg(
    data: bytes,
    quality: int = 50,
    max_pixels: int = 50_000_000,
    max_dimension: int | None = None,
    max_scans: int = DEFAULT_MAX_SCANS,
    max_icc_bytes: int = DEFAULT_MAX_ICC_BYTES,
) -> Recompressed | None:
    """JPEG -> JPEG through simplejpeg; None when this input needs the Pillow path (see module doc)."""
    import simplejpeg

    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)  # header only: no pixel decoded
    except ValueError:
        return None  # odd or corrupt: Pillow decides, and words the error
    if w * h > max_pixels:
        raise _too_many_pixels(w, h, max_pixels)
    _check_scans(data, max_scans)
    if colorspace not in ("YCbCr", "Gray") or (max_dimension and max(w, h) > max_dimension):
        return None  # CMYK/YCCK/Adobe RGB, or downscaling: Pillow (with DCT scaling)
    exif = jpeg_exif(data)
    if exif is not None and _exif_orientation(exif) != 1:
        return None  # rotate/flip first: Pillow's exif_transpose
    icc = jpeg_icc(data, max_icc_bytes)
    if icc is not None and colorspace == "Gray" and transform_for(icc, "L") is not None:
        return None  # grey with a grey profile that is not sRGB's curve: Pillow's path converts it
    try:
        with timed("decode"):
            pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")  # strict: corrupt input goes to Pillow
            if icc is not None and colorspace == "YCbCr":
                pixels = convert_rgb_array(pixels, icc)  # Display P3, Adobe RGB...: to sRGB after decoding
        with timed("encode"):
            encoded = simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="RGB", colorsubsampling="420")
    except ValueError:
        return None
    kept = _keep(data, encoded, max_dimension)
    if kept is not None:
        return Recompressed(kept, w, h, "JPEG", kept_original=True)  # same rule as the Pillow path
    return Recompressed(encoded, w, h, "JPEG")


def recompress(
    data: bytes,
    quality: int = 50,
    max_pixels: int = 50_000_000,
    max_dimension: int | None = None,
    fast_jpeg: bool = True,
    max_scans: int = DEFAULT_MAX_SCANS,
    max_icc_bytes: int = DEFAULT_MAX_ICC_BYTES,
    background: tuple[int, int, int] = WHITE,
) -> Recompressed:
    """Decode `data` and encode it as an untagged sRGB JPEG at `quality`. Raises ImageError with a reason.

    A JPEG with more than `max_scans` scans is refused before any pixel is decoded; an embedded ICC
    profile over `max_icc_bytes` is ignored; transparency is flattened onto `background`."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(_describe_unknown(data))
    if fmt == "JPEG":
        _check_scans(data, max_scans)
    if fmt == "JPEG" and fast_jpeg:
        fast = recompress_fast_jpeg(data, quality, max_pixels, max_dimension, max_scans, max_icc_bytes)
        if fast is not None:
            return fast
    return recompress_pillow(data, fmt, quality, max_pixels, max_dimension, max_icc_bytes, background)


def recompress_pillow(
    data: bytes,
    fmt: str,
    quality: int = 50,
    max_pixels: int = 50_000_000,
    max_dimension: int | None = None,
    max_icc_bytes: int = DEFAULT_MAX_ICC_BYTES,
    background: tuple[int, int, int] = WHITE,
) -> Recompressed:
    """The Pillow path: every accepted format and mode (`fmt` as sniffed)."""
    from PIL import Image, ImageOps

    with pillow_decoding(fmt, max_pixels):
        with timed("decode"):  # decoded, oriented, in sRGB and at its output size
            img = open_checked(data, fmt, max_pixels)
            if max_dimension and max(img.size) > max_dimension and fmt == "JPEG":
                img.draft("RGB", (max_dimension, max_dimension))  # DCT scaling: decode fewer pixels
            img.load()
            img = ImageOps.exif_transpose(img)
            drop_large_icc(img, max_icc_bytes)
            img = to_srgb(img, background=background, source_format=fmt)
            if max_dimension and max(img.size) > max_dimension:
                img.thumbnail((max_dimension, max_dimension), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        # Metadata stripped: no exif/icc passed, and `info` emptied (Pillow re-writes a JPEG comment from it).
        img.info = {}
        with timed("encode"):
            img.save(out, "JPEG", quality=quality)
    encoded = out.getvalue()
    width, height = img.size
    kept = _keep(data, encoded, max_dimension) if fmt == "JPEG" else None
    if kept is not None:
        return Recompressed(kept, width, height, fmt, kept_original=True)
    return Recompressed(encoded, width, height, fmt)


@contextmanager
def pillow_decoding(fmt: str, max_pixels: int) -> Iterator[None]:
    """Where Pillow decodes: its own bomb guard at our limit (IMGPIPE_MAX_IMAGE_PIXELS; one value per
    process) with its warnings as errors, not log lines, and every decoder error as an ImageError in
    words. The seed path and the renditions path both decode inside it."""
    from PIL import Image, UnidentifiedImageError

    if fmt == "HEIF":
        register_heif()
    try:
        with warnings.catch_warnings():
            Image.MAX_IMAGE_PIXELS = max_pixels
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression bomb refused: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"not a decodable {fmt} image") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error()) as exc:
        raise ImageError(f"corrupt or truncated {fmt} image: {exc}") from exc


def open_checked(data: bytes, fmt: str, max_pixels: int):  # -> PIL.Image, not decoded yet
    """`data` opened lazily as `fmt`, refused before a pixel is decoded when its header's declared size
    is over `max_pixels` (the header is all we trust). Animated GIF/WebP: `open` stands on the first
    frame, which is the one kept; frames are never counted (`n_frames` walks the whole file: a GIF of a
    million frames would be a DoS)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data), formats=[fmt])
    w, h = img.size
    if w * h > max_pixels:
        raise _too_many_pixels(w, h, max_pixels)
    return img


def drop_large_icc(img, max_icc_bytes: int) -> None:  # img: PIL.Image
    """An embedded profile over `max_icc_bytes` is ignored: the image is treated as untagged."""
    if len(img.info.get("icc_profile") or b"") > max_icc_bytes:
        img.info.pop("icc_profile")


def _keep(data: bytes, encoded: bytes, max_dimension: int | None) -> bytes | None:
    """The original's image (`kept_jpeg`) when it is smaller than our encoding and needs no change."""
    if len(encoded) < len(data) or max_dimension or not _is_plain_jpeg(data):
        return None
    kept = kept_jpeg(data)
    return kept if kept is not None and len(kept) <= len(encoded) else None


def struct_error() -> type[Exception]:
    import struct

    return struct.error


def _is_plain_jpeg(data: bytes) -> bool:
    """Safe to keep as-is: RGB/greyscale JPEG with no metadata at all (no EXIF orientation to apply, no
    GPS, XMP, ICC, Photoshop or comment segments to leak): only the JFIF APP0 header is tolerated."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.mode in ("RGB", "L") and all(marker == "APP0" for marker, _ in img.applist)
