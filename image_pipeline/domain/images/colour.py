"""Colour management: a decoded image in any mode, with or without an embedded ICC profile, to sRGB.

LittleCMS (Pillow's ImageCms) converts from the embedded profile:
- RGB with its RGB profile (Adobe RGB, Display P3, ProPhoto...), grey (L, LA, 16-bit I;16*) with its grey
  profile, CMYK with its CMYK profile, CIELab with the Lab (D50) profile.
- Without a profile: RGB and grey are taken as sRGB (what browsers and CSS assume for untagged images),
  so nothing is converted; CMYK goes through the bundled `profiles/default-cmyk-fogra39.icc` (Coated
  FOGRA39, ISO 12647-2 offset on coated paper, the commonest print condition and Photoshop's European
  default CMYK working space; see `profiles/README.md`), never through the naive 255 - C - K formula.
- A profile that cannot be parsed, does not match the image's colour space, or is over the size limit
  is ignored and the image treated as untagged, as browsers do.

Intent: relative colorimetric with black point compensation. In-gamut colours (all a product photo in
a wider space mostly has) come out colorimetrically exact, where perceptual would compress them too for
LUT (print) profiles and is undefined for matrix/TRC ones (LittleCMS falls back to colorimetric). Black
point compensation maps a print profile's black (paper and ink: L* around 10) to sRGB black, so CMYK
shadows are not washed out grey; for RGB/grey display profiles, whose black is already 0, it changes
nothing. This is what Photoshop's default conversion settings do.

Output is untagged sRGB, always: every consumer (browsers, CSS, image CDNs) reads an untagged image as
sRGB, an embedded sRGB profile would add hundreds of bytes to every thumbnail, and the codec's promise
that no input metadata leaks out stays one rule without exceptions.

Transforms cost milliseconds to build, so they are cached per (SHA-256 of the profile, mode); the cache
also remembers which profiles are sRGB in all but name (a probe converts to within one level), for
which nothing is applied. LittleCMS transforms can be shared between threads (since 2.3 each call keeps
its own copy of the one-pixel cache), and Pillow releases the GIL while one runs, so the codec's
threads convert in parallel.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from functools import cache
from importlib import resources

# Embedded profiles are taken up to this size; print profiles are 0.5-3 MB, display profiles a few KB.
DEFAULT_MAX_ICC_BYTES = 4 * 1024 * 1024
WHITE = (255, 255, 255)

_SPACE_OF_MODE = {"RGB": "RGB", "L": "GRAY", "I;16": "GRAY", "I;16L": "GRAY", "I;16B": "GRAY"}
_SPACE_OF_MODE |= {"CMYK": "CMYK", "LAB": "LAB"}
_CACHE_SIZE = 64
_cache: OrderedDict[tuple[bytes | None, str], object] = OrderedDict()
_lock = threading.Lock()
_IDENTITY = object()  # cached: this profile needs no conversion


@cache
def _srgb():
    from PIL import ImageCms

    return ImageCms.createProfile("sRGB")


@cache
def _default_profile(space: str):
    from PIL import ImageCms

    if space == "CMYK":
        data = resources.files(__package__).joinpath("profiles/default-cmyk-fogra39.icc").read_bytes()
        return ImageCms.ImageCmsProfile(io.BytesIO(data))
    if space == "LAB":
        return ImageCms.createProfile("LAB")  # ICC's PCS Lab, D50
    return None  # RGB and grey: untagged means sRGB


def transform_for(icc: bytes | None, mode: str):
    """The ImageCms transform from `icc` (None: untagged) in `mode` to sRGB "RGB", or None when the
    pixels are sRGB already. Cached per (profile hash, mode)."""
    key = (hashlib.sha256(icc).digest() if icc else None, mode)
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return None if found is _IDENTITY else found
    built = _build(icc, mode)  # outside the lock: two threads may build the same one, harmlessly
    with _lock:
        _cache[key] = _IDENTITY if built is None else built
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return built


def _build(icc: bytes | None, mode: str):
    from PIL import ImageCms

    space = _SPACE_OF_MODE[mode]
    profile = None
    if icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if profile.profile.xcolor_space.strip().upper() != space:
                profile = None  # e.g. an RGB profile on a grey JPEG: ignored, as browsers do
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            profile = None
    if profile is None:
        profile = _default_profile(space)
        if profile is None:
            return None
    if mode.startswith("I;16") and transform_for(icc, "L") is None:
        return None  # a grey profile that is sRGB's curve: 16 bits are only rescaled
    flags = ImageCms.Flags.BLACKPOINTCOMPENSATION
    try:
        built = ImageCms.buildTransform(profile, _srgb(), mode, "RGB", ImageCms.Intent.RELATIVE_COLORIMETRIC, flags)
    except ImageCms.PyCMSError:
        if icc:
            return _build(None, mode)  # the embedded profile is unusable (a device link, a broken LUT...)
        raise
    if mode in ("RGB", "L") and _is_identity(built, mode):
        return None
    return built


def _is_identity(transform, mode: str) -> bool:
    """True when `transform` moves no colour of a 9x9x9 probe (or a grey ramp) by more than one level:
    sRGB profiles of other makers (HP's, Apple's, v4 parametric) decode as they are."""
    import numpy as np
    from PIL import Image, ImageCms

    if mode == "RGB":
        axis = np.linspace(0, 255, 9).round().astype(np.uint8)
        probe = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(1, -1, 3)
        expected = probe
    else:
        probe = np.arange(256, dtype=np.uint8).reshape(1, -1)
        expected = np.repeat(probe[..., None], 3, axis=-1)
    out = np.asarray(ImageCms.applyTransform(Image.fromarray(probe), transform))
    return int(np.abs(out.astype(np.int16) - expected.astype(np.int16)).max()) <= 1


def convert_rgb_array(pixels, icc: bytes | None):
    """An HxWx3 uint8 RGB array in `icc`'s space as sRGB (the simplejpeg path); the same array when it is
    sRGB already."""
    import numpy as np
    from PIL import Image, ImageCms

    transform = transform_for(icc, "RGB")
    if transform is None:
        return pixels
    img = Image.fromarray(pixels, "RGB")
    ImageCms.applyTransform(img, transform, inPlace=True)
    return np.asarray(img)


def to_srgb(img, *, background: tuple[int, int, int] | None = WHITE, source_format: str | None = None):
    """`img` (any Pillow mode, its `info["icc_profile"]` read) as sRGB: "RGB", or "RGBA" when it has
    transparency and `background` is None (kept for formats that carry alpha); otherwise alpha is
    composited onto `background` (an sRGB colour; white by default)."""
    from PIL import Image, ImageChops, ImageCms

    icc = img.info.get("icc_profile") or None
    colour, alpha = _split_alpha(img)
    if colour.mode == "CMYK" and source_format == "JPEG" and "adobe" not in img.info:
        # Pillow decodes every CMYK JPEG as Adobe-inverted (Photoshop writes inverted CMYK and says so in
        # its APP14 "Adobe" marker); a CMYK JPEG without that marker stores plain CMYK: undo the inversion.
        colour = ImageChops.invert(colour)
    transform = transform_for(icc, colour.mode)
    if transform is not None:
        rgb = ImageCms.applyTransform(colour, transform)
    elif colour.mode.startswith("I;16"):
        rgb = _sixteen_to_eight(colour).convert("RGB")
    else:
        rgb = colour.convert("RGB")
    if alpha is None or alpha.getextrema() == (255, 255):
        return rgb
    if background is None:
        rgb.putalpha(alpha)
        return rgb
    # Composited in sRGB's encoded values, as browsers composite a transparent image over a page.
    flat = Image.new("RGB", rgb.size, background)
    flat.paste(rgb, mask=alpha)
    return flat


def _split_alpha(img):
    """(colour part in a mode LittleCMS takes, alpha band or None)."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("RGBa", "La"):
        img = img.convert(mode.upper())  # premultiplied: undo it first
    elif mode == "I;16N":
        img = _as_i16(img)
    if img.mode in ("RGBA", "LA"):
        return img.convert(img.mode[:-1]), img.getchannel("A")
    if img.mode in _SPACE_OF_MODE:
        return img, None
    if img.mode in ("I", "F"):
        return _sixteen_to_eight(img), None
    return img.convert("L" if img.mode == "1" else "RGB"), None  # 1, RGBX, YCbCr, HSV


def _as_i16(img):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.asarray(img).astype("<u2"), "I;16")


def _sixteen_to_eight(img):
    """16-bit grey (or 32-bit I, F) as 8-bit L, scaled rather than clipped at 255. I;16 is full-scale by
    definition (PNG, TIFF); an I or F image whose values stay within 0-255 holds 8-bit values."""
    import numpy as np
    from PIL import Image

    values = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or values.max(initial=0) > 255:
        values = values * (255.0 / 65535.0)
    return Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), "L")
