"""Recompress one image: sniff the real format, refuse bombs before decoding, fix orientation and
colour mode, flatten alpha on white, and write a metadata-free baseline JPEG.

Two codec paths give the same result class (RGB baseline JPEG, 4:2:0, same quality, metadata stripped):
- JPEG -> JPEG through simplejpeg (libjpeg-turbo, no PIL image objects in between: ~1.4x Pillow), when
  the input is plain: 8-bit YCbCr or greyscale, EXIF orientation 1 or absent, no downscaling asked.
  The header and EXIF are read by Pillow's lazy `Image.open`, which decodes no pixels.
- Pillow for everything else (PNG, WebP, GIF, TIFF, BMP, CMYK/YCCK JPEG, rotated JPEG, 12-bit, scaled
  output with DCT scaling via `draft`), and for any JPEG the fast decoder rejects (so error messages
  come from one place).

Pure function of bytes in, bytes out, so it runs in a thread or process pool and is tested directly.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

# Formats we decode. Anything else (SVG, HTML, PDF, ...) is refused per URL before Pillow parses it.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")


class ImageError(ValueError):
    """This input cannot be turned into a JPEG; the message says why, in words."""


@dataclass(frozen=True)
class Recompressed:
    data: bytes
    width: int
    height: int
    source_format: str
    kept_original: bool = False  # the input JPEG was already smaller than our output


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
    return None


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
    return "unrecognised file format (accepted: JPEG, PNG, WebP, GIF, TIFF, BMP)"


def _to_rgb(img):  # noqa: ANN001, ANN202 (PIL.Image)
    """Any mode -> RGB: 16-bit scaled, CMYK converted, palette/alpha flattened on white."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything above 255 to white.
        hi = img.getextrema()[1] or 1
        scale = 255.0 / 65535.0 if hi > 255 else 1.0
        img = img.point(lambda v: v * scale, mode="I").convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "PA", "La"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def _too_many_pixels(w: int, h: int, max_pixels: int) -> ImageError:
    return ImageError(f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}")


def recompress_fast_jpeg(
    data: bytes, quality: int = 50, max_pixels: int = 50_000_000, max_dimension: int | None = None
) -> Recompressed | None:
    """JPEG -> JPEG through simplejpeg; None when this input needs the Pillow path (see module doc)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as img:  # header only: no pixel decoded
            w, h = img.size
            mode = img.mode
            has_exif = "exif" in img.info
            orientation = img.getexif().get(0x0112, 1) if has_exif else 1
    except Exception:  # noqa: BLE001 (anything odd: Pillow decides, and words the error)
        return None
    if w * h > max_pixels:
        raise _too_many_pixels(w, h, max_pixels)
    if mode not in ("RGB", "L") or orientation not in (1, None) or (max_dimension and max(w, h) > max_dimension):
        return None
    import simplejpeg

    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")  # strict: corrupt input goes to Pillow
        encoded = simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="RGB", colorsubsampling="420")
    except ValueError:
        return None
    if len(encoded) >= len(data) and not max_dimension and not has_exif:
        return Recompressed(data, w, h, "JPEG", kept_original=True)
    return Recompressed(encoded, w, h, "JPEG")


def recompress(
    data: bytes,
    quality: int = 50,
    max_pixels: int = 50_000_000,
    max_dimension: int | None = None,
    fast_jpeg: bool = True,
) -> Recompressed:
    """Decode `data` and encode it as an RGB JPEG at `quality`. Raises ImageError with a reason."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(_describe_unknown(data))
    if fmt == "JPEG" and fast_jpeg:
        fast = recompress_fast_jpeg(data, quality, max_pixels, max_dimension)
        if fast is not None:
            return fast
    return recompress_pillow(data, fmt, quality, max_pixels, max_dimension)


def recompress_pillow(
    data: bytes, fmt: str, quality: int = 50, max_pixels: int = 50_000_000, max_dimension: int | None = None
) -> Recompressed:
    """The Pillow path: every accepted format and mode (`fmt` as sniffed)."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
            # Refuse before decoding a pixel: the header's declared size is all we trust.
            w, h = img.size
            if w * h > max_pixels:
                raise _too_many_pixels(w, h, max_pixels)
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP: the first frame
            if max_dimension and max(w, h) > max_dimension and fmt == "JPEG":
                img.draft("RGB", (max_dimension, max_dimension))  # DCT scaling: decode fewer pixels
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            if max_dimension and max(img.size) > max_dimension:
                img.thumbnail((max_dimension, max_dimension), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            img.save(out, "JPEG", quality=quality)  # no exif/icc passed: metadata stripped
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression bomb refused: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"not a decodable {fmt} image") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error()) as exc:
        raise ImageError(f"corrupt or truncated {fmt} image: {exc}") from exc
    encoded = out.getvalue()
    width, height = img.size
    if fmt == "JPEG" and len(encoded) >= len(data) and not max_dimension and _is_plain_jpeg(data):
        return Recompressed(data, width, height, fmt, kept_original=True)
    return Recompressed(encoded, width, height, fmt)


def struct_error() -> type[Exception]:
    import struct

    return struct.error


def _is_plain_jpeg(data: bytes) -> bool:
    """Safe to keep as-is: RGB/greyscale JPEG without EXIF (so no orientation to apply, no GPS to leak)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.mode in ("RGB", "L") and "exif" not in img.info
