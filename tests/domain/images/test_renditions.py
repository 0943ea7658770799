"""Renditions (issue 16): sizes, fits and formats from one decode, checked by decoding what came out."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from image_pipeline.domain.images.renditions import Rendition, fit_geometry, render_all, render_source
from tests.support.inputs import make_image


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize(
    "src,r,scaled,out",
    [
        ((1600, 1200), Rendition("a", width=800, height=800), (800, 600), (800, 600)),
        ((1600, 1200), Rendition("a", width=400), (400, 300), (400, 300)),
        ((300, 200), Rendition("a", width=800, height=800), (300, 200), (300, 200)),  # never upscaled
        ((300, 200), Rendition("a", width=800, height=800, upscale=True), (800, 533), (800, 533)),
        ((1600, 1200), Rendition("a", width=500, height=500, fit="cover"), (667, 500), (500, 500)),
        ((300, 200), Rendition("a", width=500, height=500, fit="cover"), (300, 200), (300, 200)),
        ((1600, 1200), Rendition("a", width=1000, height=1000, fit="pad"), (1000, 750), (1000, 1000)),
        ((300, 200), Rendition("a", width=1000, height=1000, fit="pad"), (300, 200), (1000, 1000)),
        ((1600, 1200), Rendition("a", width=1000, height=1000, fit="trim_pad", margin=50), (900, 675), (1000, 1000)),
    ],
)
def test_fit_geometry(src, r, scaled, out) -> None:
    assert fit_geometry(src, r) == (scaled, out)


def test_several_renditions_in_several_formats() -> None:
    src = make_image("JPEG", (1600, 1200), seed=3)
    specs = [
        Rendition("zoom", "jpeg", 85, 2048, 2048, progressive=True),
        Rendition("square", "jpeg", 82, 1000, 1000, fit="pad"),
        Rendition("thumb", "webp", 80, 300, 300),
        Rendition("tiny", "avif", 60, 120, 120, fit="cover"),
        Rendition("lossless", "png", 80, 64),
    ]
    out = render_all(src, specs)
    assert [(o.name, o.format, o.width, o.height) for o in out] == [
        ("zoom", "jpeg", 1600, 1200),
        ("square", "jpeg", 1000, 1000),
        ("thumb", "webp", 300, 225),
        ("tiny", "avif", 120, 120),
        ("lossless", "png", 64, 48),
    ]
    for o, pil_format in zip(out, ["JPEG", "JPEG", "WEBP", "AVIF", "PNG"], strict=True):
        img = _open(o.data)
        assert img.format == pil_format and img.size == (o.width, o.height)
        assert img.mode == "RGB"
    assert "progressive" in _open(out[0].data).info  # asked for, and given


def test_pad_fills_the_box_with_the_background() -> None:
    src = make_image("PNG", (400, 100), seed=1)
    [o] = render_all(src, [Rendition("sq", "png", 80, 200, 200, fit="pad", background=(0, 128, 255))])
    img = _open(o.data)
    assert img.size == (200, 200)
    assert img.getpixel((100, 5)) == (0, 128, 255) and img.getpixel((100, 195)) == (0, 128, 255)


def test_trim_pad_removes_a_uniform_border_then_pads_with_a_margin() -> None:
    canvas = Image.new("RGB", (1000, 1000), (250, 250, 250))
    canvas.paste(Image.new("RGB", (200, 400), (200, 20, 20)), (100, 300))  # the product, off-centre
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    [o] = render_all(buf.getvalue(), [Rendition("sq", "png", 80, 500, 500, fit="trim_pad", margin=50)])
    img = _open(o.data)
    # trimmed to 200x400, scaled to fit 400x400 (200x400 fits already: not upscaled), centred
    assert img.size == (500, 500)
    assert img.getpixel((250, 250)) == (200, 20, 20)
    assert img.getpixel((250, 30)) == (255, 255, 255)  # margin: the rendition's background
    assert img.getpixel((100, 250)) == (255, 255, 255)


def test_alpha_is_flattened_unless_kept_by_a_format_that_carries_it() -> None:
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    rgba.paste(Image.new("RGBA", (20, 20), (0, 0, 255, 255)), (10, 10))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    flat, kept, jpeg = render_all(
        buf.getvalue(),
        [
            Rendition("flat", "png", background=(0, 255, 0)),
            Rendition("kept", "webp", 90, keep_alpha=True),
            Rendition("jpeg", "jpeg", keep_alpha=True),
        ],
    )
    assert _open(flat.data).mode == "RGB" and _open(flat.data).getpixel((0, 0)) == (0, 255, 0)
    assert _open(kept.data).mode == "RGBA" and _open(kept.data).getpixel((0, 0))[3] == 0
    assert _open(jpeg.data).mode == "RGB"


def test_metadata_is_stripped_but_copyright_can_be_kept() -> None:
    img = Image.new("RGB", (64, 48), (10, 200, 30))
    exif = Image.Exif()
    exif[0x8298] = "(c) Shoe Co"
    exif[0x010F] = "Phone maker"  # Make: never kept
    exif[0x8825] = {2: (52.0, 31.0, 0.0)}  # GPS
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    plain, kept = render_all(buf.getvalue(), [Rendition("p", "jpeg"), Rendition("k", "jpeg", keep_copyright=True)])
    assert not _open(plain.data).getexif()
    got = _open(kept.data).getexif()
    assert got.get(0x8298) == "(c) Shoe Co" and 0x010F not in got and 0x8825 not in got


def test_never_larger_keeps_the_source_for_a_same_size_jpeg() -> None:
    src = make_image("JPEG", (200, 150), seed=2, quality=20)  # coded smaller than our q95 would be
    same, smaller = render_source(src, [Rendition("same", "jpeg", 95), Rendition("small", "jpeg", 95, 100, 100)])
    assert same.kept_original and len(same.data) <= len(src)
    assert not smaller.kept_original and (smaller.width, smaller.height) == (100, 75)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_and_avif_inputs_are_decoded(fmt: str) -> None:
    """Issue 16: HEIC from phones (pillow-heif) and AVIF are accepted inputs, sniffed from their `ftyp`
    brands, on both the seed path and the renditions path."""
    from image_pipeline.domain.images.codec import recompress, register_heif, sniff_format

    register_heif()  # to write the sample; the codec registers it itself when it meets one
    src = Image.linear_gradient("L").resize((400, 300)).convert("RGB")
    buf = io.BytesIO()
    src.save(buf, fmt, quality=90)
    data = buf.getvalue()
    assert sniff_format(data) == fmt
    seed = recompress(data)
    assert (seed.width, seed.height, seed.source_format) == (400, 300, fmt)
    assert _open(seed.data).format == "JPEG"
    [thumb] = render_all(data, [Rendition("t", "webp", 80, 100)])
    assert (thumb.width, thumb.height) == (100, 75) and _open(thumb.data).format == "WEBP"


def test_an_iso_media_file_that_is_no_image_is_refused() -> None:
    from image_pipeline.domain.images.codec import ImageError, recompress, sniff_format

    mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
    assert sniff_format(mp4) is None
    with pytest.raises(ImageError, match="unrecognised file format"):
        recompress(mp4)
