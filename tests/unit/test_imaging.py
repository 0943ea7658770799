import io
import struct
import zlib

import pytest
from PIL import Image

from image_pipeline.imaging import ImageError, recompress, sniff_format
from tests.helpers import make_image


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize(
    "fmt,mode,kwargs",
    [
        ("JPEG", "RGB", {}),
        ("JPEG", "L", {}),
        ("JPEG", "CMYK", {}),
        ("PNG", "RGBA", {}),
        ("PNG", "P", {}),
        ("PNG", "L", {}),
        ("PNG", "LA", {}),
        ("WEBP", "RGB", {}),
        ("WEBP", "RGBA", {}),
        ("GIF", "P", {}),
        ("TIFF", "RGB", {}),
        ("BMP", "RGB", {}),
    ],
)
def test_every_supported_input_becomes_rgb_jpeg(fmt: str, mode: str, kwargs: dict) -> None:
    src = make_image(fmt, (200, 150), mode, **kwargs)
    out = recompress(src, quality=50)
    img = decode(out.data)
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (200, 150)
    assert (out.width, out.height) == (200, 150) and out.source_format == fmt


def test_output_is_smaller_than_a_high_quality_jpeg() -> None:
    src = make_image("JPEG", (640, 480), quality=95)
    out = recompress(src, quality=50)
    assert len(out.data) < len(src) and not out.kept_original


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    img = Image.new("I;16", (64, 64))
    img.putdata([v * 1000 for v in range(64)] * 64)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    out = decode(recompress(buf.getvalue()).data)
    lo, hi = out.convert("L").getextrema()
    assert hi < 255 or lo < 200  # a clip to 8 bits would make nearly everything white


def test_alpha_is_flattened_on_white() -> None:
    img = Image.new("RGBA", (50, 50), (255, 0, 0, 0))  # fully transparent red
    buf = io.BytesIO()
    img.save(buf, "PNG")
    r, g, b = decode(recompress(buf.getvalue()).data).getpixel((25, 25))
    assert min(r, g, b) > 245


def test_exif_orientation_is_applied_and_metadata_stripped() -> None:
    img = Image.new("RGB", (300, 100), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 50, 100))  # red block on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "SecretCam"
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    out = decode(recompress(buf.getvalue()).data)
    assert out.size == (100, 300)
    r, g, b = out.getpixel((50, 10))  # the red block is now on top
    assert r > 200 and b < 80
    assert "exif" not in out.info


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("P", (40, 40), c) for c in (1, 2, 3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert decode(recompress(buf.getvalue()).data).size == (40, 40)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 10))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def test_pixel_bomb_refused_before_decoding() -> None:
    with pytest.raises(ImageError, match="pixels"):
        recompress(_png_header_only(30000, 30000), max_pixels=50_000_000)


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
        (b"<!DOCTYPE html><html><body>not found</body></html>", "HTML"),
        (b"%PDF-1.7\n", "PDF"),
        (b"", "empty"),
        (b"hello world", "unrecognised"),
    ],
)
def test_non_images_are_per_url_errors(body: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        recompress(body)


def test_truncated_and_corrupt_files() -> None:
    src = make_image("JPEG", (400, 300))
    with pytest.raises(ImageError, match="corrupt or truncated"):
        recompress(src[: len(src) // 3])
    with pytest.raises(ImageError):
        recompress(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)


def test_sniff_ignores_extensions() -> None:
    assert sniff_format(make_image("PNG")) == "PNG"
    assert sniff_format(make_image("WEBP")) == "WEBP"
    assert sniff_format(b"GIF89a....") == "GIF"
