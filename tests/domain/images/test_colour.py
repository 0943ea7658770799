"""Colour management (issue 16): inputs in other colour spaces come out as untagged sRGB with their colours.

The chart test renders flat sRGB patches into Adobe RGB (1998), Display P3, ProPhoto RGB (16-bit),
SWOP CMYK and a gamma 1.8 grey space, embeds each profile, runs the file through `recompress` at the
seed's quality and scores every patch in CIEDE2000 against the sRGB truth (`python -m
tests.support.colour_chart` prints the figures, docs/colour.md has them)."""

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from image_pipeline.domain.images import colour
from image_pipeline.domain.images.codec import recompress, recompress_fast_jpeg, recompress_pillow
from tests.support import colour_chart as chart
from tests.support import icc

# Sharma, Wu and Dalal (2005), Table 1: L1 a1 b1, L2 a2 b2, ΔE00.
SHARMA_PAIRS = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_ciede2000_matches_the_published_test_pairs() -> None:
    pairs = np.array(SHARMA_PAIRS)
    de = chart.ciede2000(pairs[:, 0:3], pairs[:, 3:6])
    assert np.array_equal(np.round(de, 4), pairs[:, 6])
    assert np.allclose(chart.ciede2000(pairs[:, 3:6], pairs[:, 0:3]), de)  # symmetric


def test_srgb_to_lab_matches_known_values() -> None:
    lab = chart.srgb_to_lab(np.array([[255, 255, 255], [255, 0, 0], [0, 0, 0], [119, 119, 119]]))
    assert np.allclose(lab[0], [100, 0, 0], atol=1e-6)
    assert np.allclose(lab[1], [53.24, 80.09, 67.20], atol=0.01)  # D65 white, IEC 61966-2-1 sRGB
    assert np.allclose(lab[2], [0, 0, 0], atol=1e-9)
    assert abs(lab[3][0] - 50.0) < 0.3 and np.allclose(lab[3][1:], 0, atol=1e-6)


@pytest.mark.parametrize("case", list(chart.cases()))
def test_chart_colours_survive_the_codec(case: str) -> None:
    """Issue 16, colour: fails on main before the fix for every non-sRGB case (checked: the profile was
    dropped; mean/max ΔE00 Adobe RGB 2.66/6.60, Display P3 1.95/4.15, ProPhoto 7.91/13.56, SWOP CMYK
    through the naive formula 7.96/18.73, grey gamma 1.8 3.28/6.48); passes: mean ≤ 1.0 and max ≤ 3.0
    at the seed's quality 50. The sRGB controls already passed on main (0.47/1.16)."""
    data = chart.cases()[case]()
    de = chart.measure(data, recompress, grey=case in chart.GREY_CASES)
    assert de.mean() <= 1.0 and de.max() <= 3.0, (case, de.round(2).tolist())
    out = decode(recompress(data).data)
    assert out.format == "JPEG" and out.mode == "RGB" and "icc_profile" not in out.info  # untagged sRGB


@pytest.mark.parametrize("space", ["adobe-rgb-1998", "display-p3"])
def test_the_fast_path_converts_wide_gamut_jpegs_after_decoding(space: str) -> None:
    """Issue 16: fails on main before the fix (the simplejpeg path took a Display P3 / Adobe RGB JPEG
    and ignored its profile); passes: it converts the decoded pixels, as the Pillow path does."""
    data = chart.save(Image.fromarray(chart.render_rgb(chart.chart_image(), space)), "JPEG", icc.rgb_profile(space))
    fast = recompress_fast_jpeg(data)
    assert fast is not None and not fast.kept_original
    de = chart.measure(data, lambda d, **kw: recompress_fast_jpeg(d, **kw))
    assert de.mean() <= 1.0 and de.max() <= 3.0
    slow = np.asarray(decode(recompress_pillow(data, "JPEG").data), dtype=np.int16)
    assert np.abs(np.asarray(decode(fast.data), dtype=np.int16) - slow).mean() < 1.0


def test_an_srgb_profile_costs_nothing_on_the_fast_path() -> None:
    """sRGB profiles of other makers convert to within a level: they are recognised and not applied."""
    img = chart.chart_image()
    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tagged, untagged = chart.save(img, "JPEG", srgb_icc), chart.save(img, "JPEG")
    assert colour.transform_for(srgb_icc, "RGB") is None
    assert colour.transform_for(icc.rgb_profile("srgb"), "RGB") is None  # our writer's sRGB: also sRGB
    assert recompress_fast_jpeg(tagged).data == recompress_fast_jpeg(untagged).data


def test_a_grey_jpeg_with_a_grey_profile_leaves_the_fast_path() -> None:
    """Issue 16: fails on main before the fix (a gamma 1.8 grey JPEG took the fast path unconverted)."""
    grey = Image.fromarray(chart.render_grey(np.full((64, 64), 120), 1.8))
    data = chart.save(grey, "JPEG", icc.grey_profile(1.8))
    assert recompress_fast_jpeg(data) is None
    r, g, b = decode(recompress(data, quality=95).data).getpixel((32, 32))
    assert r == g == b and abs(r - 120) <= 1


def _plain_cmyk_jpeg(cmyk: Image.Image, profile: bytes | None) -> bytes:
    """A CMYK JPEG that stores plain (not inverted) CMYK and has no Adobe APP14 marker, as some non-Adobe
    writers make them: Pillow's writer inverts, so the inverse is given, and the marker cut out."""
    from PIL import ImageChops

    data = chart.save(ImageChops.invert(cmyk), "JPEG", profile)
    at = data.index(b"\xff\xee")
    length = int.from_bytes(data[at + 2 : at + 4], "big")
    assert data[at + 4 : at + 9] == b"Adobe"
    return data[:at] + data[at + 2 + length :]


def test_adobe_inverted_and_plain_cmyk_jpegs_give_the_same_colours() -> None:
    """Issue 16: fails on main before the fix (a CMYK JPEG without the Adobe marker came out as its
    negative); passes: both conventions decode to the chart, through the embedded SWOP profile."""
    swop = chart.SWOP.read_bytes()
    cmyk = chart.render_cmyk(chart.chart_image(), swop)
    adobe = chart.save(cmyk, "JPEG", swop)
    at = adobe.index(b"\xff\xee")
    assert adobe[at + 4 : at + 9] == b"Adobe"  # Pillow, like Photoshop, writes the APP14 marker
    plain = _plain_cmyk_jpeg(cmyk, swop)
    for data in (adobe, plain):
        de = chart.measure(data, recompress)
        assert de.mean() <= 1.0 and de.max() <= 3.0


def test_untagged_cmyk_goes_through_the_bundled_fogra39_profile() -> None:
    """Issue 16: fails on main before the fix (255 - C - K per channel: 100 % magenta + yellow came out
    as (255, 0, 0), a red no press prints); passes: FOGRA39's red."""
    data = chart.save(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG")
    got = np.array([decode(recompress(data, quality=95).data).getpixel((16, 16))], dtype=np.float64)
    fogra = ImageCms.ImageCmsProfile(io.BytesIO(_fogra_bytes()))
    expected = ImageCms.applyTransform(
        Image.new("CMYK", (1, 1), (0, 255, 255, 0)),
        ImageCms.buildTransform(
            fogra, ImageCms.createProfile("sRGB"), "CMYK", "RGB", ImageCms.Intent.RELATIVE_COLORIMETRIC, 8192
        ),
    ).getpixel((0, 0))
    assert chart.ciede2000(chart.srgb_to_lab(got), chart.srgb_to_lab(np.array([expected])))[0] < 1.0
    assert chart.ciede2000(chart.srgb_to_lab(got), chart.srgb_to_lab(np.array([[255, 0, 0]])))[0] > 5.0


def _fogra_bytes() -> bytes:
    from importlib import resources

    return resources.files("image_pipeline.domain.images").joinpath("profiles/default-cmyk-fogra39.icc").read_bytes()


def test_a_16_bit_grey_png_with_a_grey_profile() -> None:
    """Issue 16: fails on main before the fix (the gamma 1.8 profile was dropped: greys came out dark);
    passes: the 16-bit values go through the grey profile in 16 bits."""
    values = np.array([20, 52, 85, 122, 160, 200, 243], dtype=np.float64)
    grey16 = chart.render_grey(np.repeat(values, 32)[None, :].repeat(32, axis=0), 1.8, bits=16)
    data = chart.save(Image.fromarray(grey16), "PNG", icc.grey_profile(1.8))
    assert decode(data).mode == "I;16"
    out = np.asarray(decode(recompress(data, quality=95).data), dtype=np.float64)
    got = np.array([out[16, 32 * i + 16] for i in range(len(values))])
    de = chart.ciede2000(chart.srgb_to_lab(np.stack([values] * 3, axis=1)), chart.srgb_to_lab(got))
    assert de.max() <= 1.0, de.round(2)


def test_a_palette_png_with_transparency_and_a_profile() -> None:
    """Issue 16: fails on main before the fix (palette colours kept their Adobe RGB values); passes: the
    transparent index is flattened on white and the opaque one converted to sRGB."""
    red = chart.render_rgb(Image.new("RGB", (1, 1), (200, 30, 40)), "adobe-rgb-1998")[0, 0]
    img = Image.new("P", (64, 32), 0)
    img.putpalette([0, 0, 0, *red.tolist()] + [0, 0, 0] * 254)
    img.paste(1, (32, 0, 64, 32))
    data = chart.save(img, "PNG", icc.rgb_profile("adobe-rgb-1998"), transparency=0)
    out = decode(recompress(data, quality=95).data)
    assert min(out.getpixel((8, 16))) > 250  # transparent: white
    got = np.array([out.getpixel((48, 16))], dtype=np.float64)
    assert chart.ciede2000(chart.srgb_to_lab(got), chart.srgb_to_lab(np.array([[200, 30, 40]])))[0] < 1.5


def test_an_la_image_flattened_or_kept() -> None:
    """Issue 16: fails on main before the fix (grey profile dropped); passes: the grey converted, the
    transparent part on the background (white, or the colour asked for), or alpha kept when asked."""
    grey = int(chart.render_grey(np.array([122]), 1.8)[0])
    img = Image.new("LA", (64, 32), (grey, 255))
    img.paste((0, 0), (0, 0, 32, 32))  # left half fully transparent
    data = chart.save(img, "PNG", icc.grey_profile(1.8))
    out = decode(recompress(data, quality=95).data)
    assert min(out.getpixel((8, 16))) > 250 and all(abs(v - 122) <= 2 for v in out.getpixel((48, 16)))
    on_black = decode(recompress(data, quality=95, background=(0, 0, 0)).data)
    assert max(on_black.getpixel((8, 16))) < 5
    kept = colour.to_srgb(decode(data), background=None)
    assert kept.mode == "RGBA" and kept.getpixel((8, 16))[3] == 0 and kept.getpixel((48, 16))[3] == 255
    assert all(abs(v - 122) <= 1 for v in kept.getpixel((48, 16))[:3])


def test_unusable_profiles_are_ignored_as_browsers_ignore_them() -> None:
    """A broken profile, one of another colour space, or one over the size limit: the image is read as
    untagged (sRGB), never failed."""
    img = chart.chart_image()
    untagged = decode(recompress(chart.save(img, "PNG"), quality=95).data)
    for profile in (b"\x00" * 200, chart.SWOP.read_bytes(), icc.grey_profile(1.8)):
        out = decode(recompress(chart.save(img, "PNG", profile), quality=95).data)
        assert np.array_equal(np.asarray(out), np.asarray(untagged))
    adobe = chart.save(img, "JPEG", icc.rgb_profile("adobe-rgb-1998"))
    capped = np.asarray(decode(recompress(adobe, max_icc_bytes=100).data))
    assert np.array_equal(capped, np.asarray(decode(recompress(chart.save(img, "JPEG")).data)))
    assert not np.array_equal(capped, np.asarray(decode(recompress(adobe).data)))


def test_transforms_are_cached_per_profile() -> None:
    p3 = icc.rgb_profile("display-p3")
    first = colour.transform_for(p3, "RGB")
    assert first is not None and colour.transform_for(bytes(p3), "RGB") is first
    assert colour.transform_for(p3, "L") is None  # an RGB profile is no grey profile: untagged grey


def test_a_rotated_wide_gamut_jpeg_is_turned_and_converted() -> None:
    """Issue 16: fails on main before the fix (profile dropped); passes: the Pillow path (EXIF
    orientation 6) keeps the profile through the rotation and converts it."""
    adobe = Image.fromarray(chart.render_rgb(chart.chart_image(), "adobe-rgb-1998"))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90° clockwise: stored turned the other way
    data = chart.save(
        adobe.transpose(Image.Transpose.ROTATE_90), "JPEG", icc.rgb_profile("adobe-rgb-1998"), exif=exif.tobytes()
    )
    assert recompress_fast_jpeg(data) is None
    de = chart.measure(data, recompress)
    assert de.mean() <= 1.0 and de.max() <= 3.0


def test_a_cielab_tiff_is_converted_from_lab() -> None:
    """CIELab (D50) goes through LittleCMS's Lab profile: L* 50 is sRGB mid grey (119), and a chromatic
    value lands where Pillow's own LAB conversion (which main used) puts it."""
    buf = io.BytesIO()
    Image.new("LAB", (32, 32), (128, 128, 128)).save(buf, "TIFF")
    assert decode(recompress(buf.getvalue(), quality=95).data).getpixel((16, 16)) == (119, 119, 119)
    buf = io.BytesIO()
    Image.new("LAB", (32, 32), (200, 160, 100)).save(buf, "TIFF")  # L* 78, a* 32, b* -28
    got = decode(recompress(buf.getvalue(), quality=95).data).getpixel((16, 16))
    assert all(abs(g - e) <= 2 for g, e in zip(got, (234, 174, 248), strict=True))


@pytest.mark.parametrize("case", list(chart.cases()))
@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
def test_chart_colours_survive_every_rendition_format(case: str, fmt: str) -> None:
    """Issue 16: the renditions path (a profile's outputs) decodes through the same colour management:
    the chart within mean ΔE00 ≤ 1.0, max ≤ 3.0 in each output format, at the source's size."""
    from types import SimpleNamespace

    from image_pipeline.domain.images.renditions import Rendition, render_all

    def one_rendition(data: bytes) -> SimpleNamespace:
        [out] = render_all(data, [Rendition("r", fmt, 90)])
        return SimpleNamespace(data=out.data)

    data = chart.cases()[case]()
    de = chart.measure(data, one_rendition, grey=case in chart.GREY_CASES)
    assert de.mean() <= 1.0 and de.max() <= 3.0, (case, fmt, de.round(2).tolist())
