"""A chart of flat sRGB patches, rendered into other colour spaces with their profile embedded, run
through the codec and measured against the sRGB truth in CIEDE2000.

`python -m tests.support.colour_chart` prints mean/max ΔE2000 per case for the codec in this tree;
`--rev REV` measures codec.py as it was at a git revision (e.g. main before colour management);
`--extras` adds what a SWOP file gives without its profile (read as the default FOGRA39) and with the
fixture profile's own B2A separation unrefined.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from tests.support import icc

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "icc"
SWOP = FIXTURES / "swop-tr005-coated.icc"  # see tests/fixtures/icc/README.md
PATCH = 32  # px: a multiple of the 16 px JPEG MCU, so each patch is flat in every DCT block

# The 24 ColorChecker Classic patches (their commonly published sRGB values), a grey ramp from near
# black to white, and skin, product and pastel colours: all inside sRGB and inside the print gamut.
CHART = [
    (115, 82, 68), (194, 150, 130), (98, 122, 157), (87, 108, 67), (133, 128, 177), (103, 189, 170),
    (214, 126, 44), (80, 91, 166), (193, 90, 99), (94, 60, 108), (157, 188, 64), (224, 163, 46),
    (56, 61, 150), (70, 148, 73), (175, 54, 60), (231, 199, 31), (187, 86, 149), (8, 133, 161),
    (243, 243, 242), (200, 200, 200), (160, 160, 160), (122, 122, 121), (85, 85, 85), (52, 52, 52),
    (20, 20, 20), (35, 35, 35), (255, 255, 255), (230, 190, 160), (160, 110, 80), (250, 220, 200),
    (40, 60, 110), (200, 30, 40), (120, 150, 200), (180, 200, 150), (90, 40, 30), (240, 230, 140),
]  # fmt: skip
COLUMNS = 6


def chart_image(colours=CHART) -> Image.Image:
    rows = -(-len(colours) // COLUMNS)
    img = Image.new("RGB", (COLUMNS * PATCH, rows * PATCH), (128, 128, 128))
    for i, c in enumerate(colours):
        x, y = (i % COLUMNS) * PATCH, (i // COLUMNS) * PATCH
        img.paste(tuple(c), (x, y, x + PATCH, y + PATCH))
    return img


def patch_means(img: Image.Image, count: int = len(CHART)) -> np.ndarray:
    """The mean colour of the middle of each patch (a margin of 8 px keeps chroma subsampling's blur at
    the edges out)."""
    a = np.asarray(img.convert("RGB"), dtype=np.float64)
    out = []
    for i in range(count):
        x, y = (i % COLUMNS) * PATCH, (i // COLUMNS) * PATCH
        out.append(a[y + 8 : y + PATCH - 8, x + 8 : x + PATCH - 8].reshape(-1, 3).mean(axis=0))
    return np.array(out)


# --- colour science: sRGB -> CIELAB (D65 reference white) and CIEDE2000 ---


def srgb_to_lab(rgb8: np.ndarray) -> np.ndarray:
    xyz = icc.decode(np.asarray(rgb8, dtype=np.float64) / 255.0, "srgb") @ icc.rgb_to_xyz_matrix("srgb").T
    f = np.cbrt(xyz / icc.xy_to_xyz(*icc.D65_XY))
    f = np.where(f**3 > 216 / 24389, f, (24389 / 27 * (xyz / icc.xy_to_xyz(*icc.D65_XY)) + 16) / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 (kL = kC = kH = 1), following Sharma, Wu and Dalal (2005), equations (1)-(17)."""
    L1, a1, b1 = np.asarray(lab1, dtype=np.float64).T
    L2, a2, b2 = np.asarray(lab2, dtype=np.float64).T
    c_bar7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.where((a1p == 0) & (b1 == 0), 0.0, np.degrees(np.arctan2(b1, a1p)) % 360)
    h2p = np.where((a2p == 0) & (b2 == 0), 0.0, np.degrees(np.arctan2(b2, a2p)) % 360)
    chroma0 = c1p * c2p == 0
    dh = h2p - h1p
    dh = np.where(chroma0, 0.0, np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh)))
    d_l, d_c = L2 - L1, c2p - c1p
    d_h = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_bar, c_bar = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(
        chroma0,
        h_sum,
        np.where(np.abs(h1p - h2p) <= 180, h_sum / 2, np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)),
    )
    t = (
        1
        - 0.17 * np.cos(np.radians(h_bar - 30))
        + 0.24 * np.cos(np.radians(2 * h_bar))
        + 0.32 * np.cos(np.radians(3 * h_bar + 6))
        - 0.20 * np.cos(np.radians(4 * h_bar - 63))
    )
    d_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar
    s_h = 1 + 0.015 * c_bar * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    return np.sqrt((d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h))


# --- rendering the chart into other spaces (analytically for RGB and grey; LittleCMS for CMYK) ---


def render_rgb(img: Image.Image, space: str, bits: int = 8) -> np.ndarray:
    """The sRGB image's colours in `space`, by the published matrices (not by LittleCMS, so the codec's
    conversion is checked against independent arithmetic)."""
    srgb = icc.decode(np.asarray(img, dtype=np.float64) / 255.0, "srgb")
    xyz = srgb @ icc.rgb_to_xyz_matrix("srgb").T
    _, white, curve = icc.SPACES[space]
    xyz = xyz @ icc.bradford(icc.xy_to_xyz(*icc.D65_XY), icc.xy_to_xyz(*white)).T
    linear = xyz @ np.linalg.inv(icc.rgb_to_xyz_matrix(space)).T
    assert linear.min() > -1e-6 and linear.max() < 1 + 1e-6, "chart outside the target gamut"
    top = (1 << bits) - 1
    return np.round(icc.encode(linear, curve) * top).astype(np.uint8 if bits == 8 else np.uint16)


def render_grey(values: np.ndarray, gamma: float, bits: int = 8) -> np.ndarray:
    """sRGB grey values as the same luminance in a `gamma` grey space."""
    top = (1 << bits) - 1
    encoded = icc.decode(np.asarray(values, dtype=np.float64) / 255.0, "srgb") ** (1 / gamma)
    return np.round(encoded * top).astype(np.uint8 if bits == 8 else np.uint16)


def render_cmyk(img: Image.Image, profile: bytes, refine: bool = True) -> Image.Image:
    """The sRGB chart separated into CMYK for `profile`: LittleCMS's sRGB -> CMYK (relative colorimetric
    with black point compensation, Photoshop's default conversion), then, with `refine`, each patch's
    8-bit CMYK moved (downhill, +-4 levels per ink a step) to the one whose colour under the profile is nearest
    the truth.

    The refinement is what a perfect B2A table would give: the small fixture profile's low-resolution
    B2A tables alone miss pale and dark patches by up to 6 ΔE00 (Argyll builds them by inverting the
    A2B table on a coarse grid), which would measure the fixture's inversion, not the codec. The colour
    a CMYK value means is the profile's A2B table: that is what the codec must apply."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    srgb = ImageCms.createProfile("sRGB")
    flags = ImageCms.Flags.BLACKPOINTCOMPENSATION
    rel = ImageCms.Intent.RELATIVE_COLORIMETRIC
    separate = ImageCms.buildTransform(srgb, source, "RGB", "CMYK", rel, flags)
    cmyk = ImageCms.applyTransform(img, separate)
    if not refine:
        return cmyk
    forward = ImageCms.buildTransform(source, srgb, "CMYK", "RGB", rel, flags)
    steps = np.stack(np.meshgrid(*[np.arange(-4, 5)] * 4, indexing="ij"), axis=-1).reshape(-1, 4)
    out = cmyk.copy()
    for i, truth in enumerate(CHART):
        x, y = (i % COLUMNS) * PATCH, (i // COLUMNS) * PATCH
        best, best_de = np.array(cmyk.getpixel((x + PATCH // 2, y + PATCH // 2))), np.inf
        for _ in range(12):  # walk downhill, a 9x9x9x9 neighbourhood at a time
            candidates = np.clip(best + steps, 0, 255).astype(np.uint8)
            image = Image.fromarray(candidates[None, :, :], "CMYK")
            colours = np.asarray(ImageCms.applyTransform(image, forward))[0]
            de = ciede2000(srgb_to_lab(np.array([truth] * len(steps))), srgb_to_lab(colours))
            if de.min() >= best_de:
                break
            best, best_de = candidates[int(de.argmin())].astype(int), de.min()
        out.paste(tuple(int(v) for v in best), (x, y, x + PATCH, y + PATCH))
    return out


def png_rgb16(pixels: np.ndarray, icc_profile: bytes | None) -> bytes:
    """A 48-bit RGB PNG with an iCCP chunk (Pillow writes no 16-bit RGB PNG)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    if icc_profile:
        out += chunk(b"iCCP", b"test\x00\x00" + zlib.compress(icc_profile))
    return out + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def save(img: Image.Image, fmt: str, icc_profile: bytes | None = None, **kwargs) -> bytes:
    buf = io.BytesIO()
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    if fmt == "JPEG":
        kwargs.setdefault("quality", 95)
        kwargs.setdefault("subsampling", 0)
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def cases() -> dict[str, Callable[[], bytes]]:
    """Each case: the chart as an encoded file, in its space, with its profile embedded (or not)."""
    chart = chart_image()
    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    swop = SWOP.read_bytes()
    greys = np.asarray(chart.convert("L"))  # only the grey patches are scored in the grey cases

    def rgb(space: str, fmt: str) -> Callable[[], bytes]:
        return lambda: save(Image.fromarray(render_rgb(chart, space)), fmt, icc.rgb_profile(space))

    return {
        "srgb untagged JPEG (control)": lambda: save(chart, "JPEG"),
        "srgb tagged PNG (control)": lambda: save(chart, "PNG", srgb_icc),
        "Adobe RGB (1998) JPEG": rgb("adobe-rgb-1998", "JPEG"),
        "Adobe RGB (1998) PNG": rgb("adobe-rgb-1998", "PNG"),
        "Display P3 JPEG": rgb("display-p3", "JPEG"),
        "Display P3 PNG": rgb("display-p3", "PNG"),
        "Display P3 WebP (lossless)": lambda: save(
            Image.fromarray(render_rgb(chart, "display-p3")), "WEBP", icc.rgb_profile("display-p3"), lossless=True
        ),
        "ProPhoto RGB 16-bit PNG": lambda: png_rgb16(
            render_rgb(chart, "prophoto-rgb", 16), icc.rgb_profile("prophoto-rgb")
        ),
        "CMYK SWOP JPEG (Adobe-inverted)": lambda: save(render_cmyk(chart, swop), "JPEG", swop),
        "CMYK SWOP TIFF": lambda: save(render_cmyk(chart, swop), "TIFF", swop, compression="tiff_lzw"),
        "grey gamma 1.8 JPEG": lambda: save(Image.fromarray(render_grey(greys, 1.8)), "JPEG", icc.grey_profile(1.8)),
    }  # fmt: skip


GREY_CASES = {"grey gamma 1.8 JPEG"}


def grey_patches() -> list[int]:
    return [i for i, (r, g, b) in enumerate(CHART) if r == g == b]


def measure(data: bytes, recompress, grey: bool = False, **kwargs) -> np.ndarray:
    """ΔE2000 of each chart patch after `recompress(data)`, against the sRGB truth."""
    out = Image.open(io.BytesIO(recompress(data, **kwargs).data))
    truth = np.array(CHART, dtype=np.float64)
    got = patch_means(out)
    if grey:  # a grey chart holds the luminance of every patch; only the neutral ones have a truth
        keep = grey_patches()
        truth, got = truth[keep], got[keep]
    return ciede2000(srgb_to_lab(truth), srgb_to_lab(got))


def _codec_at(rev: str):
    import importlib.util
    import subprocess
    import sys
    import tempfile

    root = Path(__file__).resolve().parents[2]
    src = subprocess.run(
        ["git", "show", f"{rev}:image_pipeline/domain/images/codec.py"], cwd=root, capture_output=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "codec_at_rev.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location("codec_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="measure codec.py as at this git revision instead of the working tree")
    parser.add_argument("--quality", type=int, default=50, help="output JPEG quality (default: the seed's 50)")
    parser.add_argument("--extras", action="store_true", help="also: a SWOP file without its profile, and unrefined")
    args = parser.parse_args(argv)
    if args.rev:
        codec = _codec_at(args.rev)
    else:
        from image_pipeline.domain.images import codec
    print(f"codec: {args.rev or 'working tree'}, output quality {args.quality}")
    print(f"{'case':40} {'mean dE00':>9} {'max dE00':>9}")
    rows = dict(cases())
    if args.extras:
        swop, chart = SWOP.read_bytes(), chart_image()
        rows["SWOP JPEG, profile stripped (FOGRA39)"] = lambda: save(render_cmyk(chart, swop), "JPEG")
        rows["SWOP JPEG, Argyll's B2A unrefined"] = lambda: save(render_cmyk(chart, swop, refine=False), "JPEG", swop)
    for name, make in rows.items():
        de = measure(make(), codec.recompress, grey=name in GREY_CASES, quality=args.quality)
        print(f"{name:40} {de.mean():9.2f} {de.max():9.2f}")


if __name__ == "__main__":
    main()
