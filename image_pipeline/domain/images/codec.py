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
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

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


# The end of a scan's entropy-coded data: 0xFF followed by a marker byte (not a stuffed 0x00, not a
# restart marker inside the scan, not fill).
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each segment after SOI, up to and including EOI; a scan (SOS) includes its
    entropy-coded data. ValueError(position) where the structure breaks (no EOI is a break too)."""
    pos, n = 2, len(data)
    while True:
        if pos + 2 > n or data[pos] != 0xFF:
            raise ValueError(pos)
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            yield marker, pos, pos + 2
            return
        if marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7 or pos + 4 > n:
            raise ValueError(pos)
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end > n or end < pos + 4:
            raise ValueError(pos)
        if marker == 0xDA:
            found = _SCAN_END.search(data, end)
            if found is None:
                raise ValueError(pos)
            end = found.start()
        yield marker, pos, end
        pos = end


def jpeg_scan_count(data: bytes, limit: int) -> int:
    """How many scans (SOS) the JPEG has, counted without decoding; stops counting past `limit`.

    Where the structure breaks, every SOS marker byte pair after that point is counted instead (an
    over-count only ever refuses a broken file)."""
    count = 0
    try:
        for marker, _start, _end in jpeg_segments(data):
            if marker == 0xDA:
                count += 1
                if count > limit:
                    return count
    except ValueError as exc:
        count += data.count(b"\xff\xda", exc.args[0])
    return count


def _check_scans(data: bytes, max_scans: int) -> None:
    scans = jpeg_scan_count(data, max_scans)
    if scans > max_scans:
        # libjpeg-turbo's documented DoS: every scan of a progressive JPEG costs a pass over the image.
        raise ImageError(f"JPEG has more than {max_scans} scans (progressive scan bomb refused before decoding)")


# What a kept original may hold: the tables, the frame, restart interval, scans and EOI. Everything a
# decoder skips (APPn, COM, unknown markers, bytes after EOI) is left out.
_KEPT_MARKERS = frozenset({0xDB, 0xC4, 0xDD, 0xC0, 0xC1, 0xC2, 0xDA, 0xD9})
_JFIF = b"\xff\xe0\x00\x10JFIF\x00"


def kept_jpeg(data: bytes) -> bytes | None:
    """`data` rebuilt as only the image, or None when it cannot be kept (then our encoding is stored).

    Kept: SOI, a plain JFIF APP0 (16 bytes, no thumbnail), the quantisation tables the frame uses, the
    Huffman tables, one baseline/extended/progressive frame, DRI, the scans, EOI. The rebuilt stream
    must then decode strictly (libjpeg-turbo warnings are errors): bytes inside a scan that the decoder
    would skip over ("extraneous bytes before marker") or a bogus progression refuse keeping it.
    """
    import simplejpeg

    try:
        segments = list(jpeg_segments(data))
    except ValueError:
        return None
    frames = [(s, e) for m, s, e in segments if m in (0xC0, 0xC1, 0xC2)]
    if len(frames) != 1 or any(m not in _KEPT_MARKERS and not 0xE0 <= m <= 0xFE for m, _, _ in segments):
        return None  # lossless, hierarchical, arithmetic, DNL or unknown markers: not ours to keep
    fs, fe = frames[0]
    components = data[fs + 9]
    used_q = {data[fs + 10 + 3 * i + 2] for i in range(components) if fs + 10 + 3 * i + 2 < fe}
    out = [b"\xff\xd8"]
    for marker, start, end in segments:
        seg = data[start:end]
        if (
            marker == 0xE0
            and seg[: len(_JFIF)] == _JFIF
            and len(seg) == 18
            and seg[16:18] == b"\x00\x00"
            and len(out) == 1
        ):
            out.append(seg)
        elif marker == 0xDB:
            tables, pos = [], start + 4
            while pos < end:
                size = 129 if data[pos] >> 4 else 65
                if (data[pos] & 0x0F) in used_q:
                    tables.append(data[pos : pos + size])
                pos += size
            if pos != end:
                return None
            if tables:
                body = b"".join(tables)
                out.append(b"\xff\xdb" + (len(body) + 2).to_bytes(2, "big") + body)
        elif marker in _KEPT_MARKERS:
            out.append(seg)
    rebuilt = b"".join(out)
    try:
        simplejpeg.decode_jpeg(rebuilt, colorspace="RGB", strict=True)
    except ValueError:
        return None
    return rebuilt


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
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")  # strict: corrupt input goes to Pillow
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
) -> Recompressed:
    """Decode `data` and encode it as an RGB JPEG at `quality`. Raises ImageError with a reason.

    A JPEG with more than `max_scans` scans is refused before any pixel is decoded."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(_describe_unknown(data))
    if fmt == "JPEG":
        _check_scans(data, max_scans)
    if fmt == "JPEG" and fast_jpeg:
        fast = recompress_fast_jpeg(data, quality, max_pixels, max_dimension, max_scans)
        if fast is not None:
            return fast
    return recompress_pillow(data, fmt, quality, max_pixels, max_dimension)


def recompress_pillow(
    data: bytes, fmt: str, quality: int = 50, max_pixels: int = 50_000_000, max_dimension: int | None = None
) -> Recompressed:
    """The Pillow path: every accepted format and mode (`fmt` as sniffed)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if fmt == "HEIF":
        register_heif()
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
    kept = _keep(data, encoded, max_dimension) if fmt == "JPEG" else None
    if kept is not None:
        return Recompressed(kept, width, height, fmt, kept_original=True)
    return Recompressed(encoded, width, height, fmt)


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
