"""Recompress one image: sniff the real format, refuse bombs before decoding, fix orientation and
colour mode, flatten alpha on white, and write a metadata-free baseline JPEG.

Two codec paths give the same result class (RGB baseline JPEG, 4:2:0, same quality, metadata stripped):
- JPEG -> JPEG through simplejpeg (libjpeg-turbo, no PIL image objects in between: faster than Pillow,
  docs/performance.md), when the input is plain: 8-bit YCbCr or greyscale, EXIF orientation 1 or
  absent, no downscaling asked.
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


def _to_rgb(img):  # PIL.Image
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


def jpeg_exif(data: bytes) -> bytes | None:
    """The EXIF payload (APP1 "Exif") of a JPEG, found by walking its marker segments up to the scan.

    No pixel is decoded and no PIL object made: a handful of bytes are read per segment.
    """
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None  # not at a marker: malformed, let the decoder decide
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: headers are over
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            return data[pos + 10 : pos + 2 + length]
        pos += 2 + length
    return None


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
    data: bytes, quality: int = 50, max_pixels: int = 50_000_000, max_dimension: int | None = None
) -> Recompressed | None:
    """JPEG -> JPEG through simplejpeg; None when this input needs the Pillow path (see module doc)."""
    import simplejpeg

    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)  # header only: no pixel decoded
    except ValueError:
        return None  # odd or corrupt: Pillow decides, and words the error
    if w * h > max_pixels:
        raise _too_many_pixels(w, h, max_pixels)
    if colorspace not in ("YCbCr", "Gray") or (max_dimension and max(w, h) > max_dimension):
        return None  # CMYK/YCCK/Adobe RGB, or downscaling: Pillow (with DCT scaling)
    exif = jpeg_exif(data)
    if exif is not None and _exif_orientation(exif) != 1:
        return None  # rotate/flip first: Pillow's exif_transpose
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")  # strict: corrupt input goes to Pillow
        encoded = simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="RGB", colorsubsampling="420")
    except ValueError:
        return None
    if len(encoded) >= len(data) and not max_dimension and _is_plain_jpeg(data):
        return Recompressed(data, w, h, "JPEG", kept_original=True)  # same rule as the Pillow path
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
            # Pillow's own guard uses the same limit (IMGPIPE_MAX_IMAGE_PIXELS; one value per process),
            # and its decompression-bomb warnings are errors here, not log lines.
            Image.MAX_IMAGE_PIXELS = max_pixels
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
            # Refuse before decoding a pixel: the header's declared size is all we trust.
            w, h = img.size
            if w * h > max_pixels:
                raise _too_many_pixels(w, h, max_pixels)
            # Animated GIF/WebP: `open` stands on the first frame, which is the one we keep. Frames are
            # never counted (`n_frames` walks the whole file: a GIF of a million frames would be a DoS).
            if max_dimension and max(w, h) > max_dimension and fmt == "JPEG":
                img.draft("RGB", (max_dimension, max_dimension))  # DCT scaling: decode fewer pixels
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            if max_dimension and max(img.size) > max_dimension:
                img.thumbnail((max_dimension, max_dimension), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            # Metadata stripped: no exif/icc passed, and `info` emptied (Pillow re-writes a JPEG comment from it).
            img.info = {}
            img.save(out, "JPEG", quality=quality)
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
    """Safe to keep as-is: RGB/greyscale JPEG with no metadata at all (no EXIF orientation to apply, no
    GPS, XMP, ICC, Photoshop or comment segments to leak): only the JFIF APP0 header is tolerated."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.mode in ("RGB", "L") and all(marker == "APP0" for marker, _ in img.applist)
