"""Several renditions from one decode: the sizes, fits and formats a catalogue asks for.

A rendition is a box (`width` × `height`, either may be open for `inside`), a fit and a format:
- `inside`: scaled to fit the box, aspect kept;
- `cover`: scaled to cover the box, then centre-cropped to it;
- `pad`: `inside`, then centred on a canvas of the box's size in `background`;
- `trim_pad`: a uniform border (the corner colour, within `trim_tolerance`) trimmed first, then
  padded with `margin` pixels kept free on every side.
Nothing is upscaled unless `upscale` is set (a padded square of a small photo is the photo, centred).

The source is decoded once, at the size the largest rendition needs (JPEG's DCT scaling decodes fewer
pixels when every rendition is smaller than half the source), then each rendition is cut from it.
Formats (encoders.py): `jpeg`, `webp`, `avif`, `png`, and `auto`: the smallest of AVIF, WebP and JPEG,
each at the lowest quality that reaches the rendition's `target` (an SSIMULACRA2 score, quality.py: one
scale for every format, which the encoders' quality numbers are not). A rendition of one format takes
either a `quality` number or a `target`. Metadata is stripped; `keep_copyright` keeps EXIF Copyright
and Artist only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from image_pipeline.domain.images import quality as perceptual
from image_pipeline.domain.images.codec import (
    DEFAULT_MAX_ICC_BYTES,
    DEFAULT_MAX_SCANS,
    ImageError,
    _check_scans,
    _describe_unknown,
    drop_large_icc,
    open_checked,
    pillow_decoding,
    sniff_format,
)
from image_pipeline.domain.images.colour import to_srgb
from image_pipeline.domain.images.encoders import encode_rendition
from image_pipeline.domain.telemetry.metrics import timed

FORMATS = ("jpeg", "webp", "avif", "png", "auto")
FITS = ("inside", "cover", "pad", "trim_pad")
CONTENT_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif", "png": "image/png"}
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "avif": "avif", "png": "png"}
_COPYRIGHT, _ARTIST = 0x8298, 0x013B


@dataclass(frozen=True)
class Rendition:
    name: str
    format: str = "jpeg"
    quality: int = 80
    width: int | None = None
    height: int | None = None
    fit: str = "inside"
    background: tuple[int, int, int] = (255, 255, 255)
    keep_alpha: bool = False  # png/webp/avif keep transparency instead of flattening on `background`
    margin: int = 0  # trim_pad: pixels kept free on every side
    trim_tolerance: int = 12  # trim_pad: how far (0-255 per channel) a border pixel may stray from the corner
    upscale: bool = False
    progressive: bool = False  # jpeg
    keep_copyright: bool = False
    target: float | None = None  # an SSIMULACRA2 score: quality is searched per image to reach it

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}")
        if self.fit != "inside" and not (self.width and self.height):
            raise ValueError(f"fit {self.fit!r} needs both width and height")
        if self.fit == "trim_pad" and 2 * self.margin >= min(self.width or 0, self.height or 0):
            raise ValueError("margin must leave room for the image")
        if self.format == "auto" and self.target is None:
            raise ValueError("format auto needs a target score")

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["background"] = "#" + "".join(f"{c:02x}" for c in self.background)
        return d

    @property
    def longest(self) -> int | None:
        """The longest side this rendition can need from the source (None: the source's own)."""
        if self.upscale or not (self.width or self.height):
            return None
        if self.fit == "cover" and self.width and self.height:
            return None  # cover may need the full resolution along the short side: no DCT shortcut
        return max(self.width or 0, self.height or 0)


@dataclass(frozen=True)
class Rendered:
    name: str
    data: bytes
    format: str  # jpeg | webp | avif | png (what `auto` chose)
    width: int
    height: int
    quality: int
    kept_original: bool = False
    source_size: tuple[int, int] = (0, 0)  # the source as decoded (orientation applied)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


@dataclass
class Decoded:
    image: object  # PIL.Image in RGB or RGBA
    source_format: str
    source_size: tuple[int, int]
    exif: dict[int, str] = field(default_factory=dict)  # the copyright tags, for keep_copyright


def render_all(
    data: bytes,
    renditions: list[Rendition] | tuple[Rendition, ...],
    max_pixels: int = 50_000_000,
    max_scans: int = DEFAULT_MAX_SCANS,
    max_icc_bytes: int = DEFAULT_MAX_ICC_BYTES,
) -> list[Rendered]:
    """Every rendition of `data`, from one decode. Raises ImageError with a reason."""
    if not renditions:
        raise ValueError("no renditions")
    needs = [r.longest for r in renditions]
    draft = None if any(n is None for n in needs) else max(n for n in needs if n is not None)
    with timed("decode"):
        decoded = decode(data, max_pixels, max_scans, draft, max_icc_bytes)
    try:
        with timed("encode"):  # every rendition: its resize, crop or pad, its encoding
            return [_render(decoded, r) for r in renditions]
    except (OSError, ValueError) as exc:
        raise ImageError(f"could not encode the image: {exc}") from exc


def decode(
    data: bytes, max_pixels: int, max_scans: int, draft: int | None = None, max_icc_bytes: int = DEFAULT_MAX_ICC_BYTES
) -> Decoded:
    """One decode: sniffed format, bomb limits before any pixel, orientation applied, sRGB through the
    embedded profile (`colour.to_srgb`), RGB, or RGBA when the source has transparency (each rendition
    then flattens it on its background or keeps it)."""
    from PIL import ImageOps

    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(_describe_unknown(data))
    if fmt == "JPEG":
        _check_scans(data, max_scans)
    with pillow_decoding(fmt, max_pixels):
        img = open_checked(data, fmt, max_pixels)
        w, h = img.size
        if draft and fmt == "JPEG" and max(w, h) > draft:
            img.draft(img.mode if img.mode in ("RGB", "L") else None, (draft, draft))
        exif = img.getexif()
        tags = {t: str(exif[t]) for t in (_COPYRIGHT, _ARTIST) if t in exif and str(exif[t]).strip()}
        img.load()
        drop_large_icc(img, max_icc_bytes)
        img = ImageOps.exif_transpose(img)
        img = to_srgb(img, background=None, source_format=fmt)
    return Decoded(img, fmt, (w, h), tags)


def fit_geometry(src: tuple[int, int], r: Rendition) -> tuple[tuple[int, int], tuple[int, int]]:
    """(size the source is scaled to, size of the output) for rendition `r` of a `src`-sized image."""
    w, h = src
    bw, bh = r.width, r.height
    if r.fit == "trim_pad":
        bw, bh = (r.width or 0) - 2 * r.margin, (r.height or 0) - 2 * r.margin
    if not bw and not bh:
        scale = 1.0
    elif r.fit == "cover":
        scale = max(bw / w, bh / h)  # type: ignore[operator]
    else:
        scale = min(bw / w if bw else float("inf"), bh / h if bh else float("inf"))
    if not r.upscale:
        scale = min(scale, 1.0)
    scaled = (max(1, round(w * scale)), max(1, round(h * scale)))
    if r.fit == "inside":
        return scaled, scaled
    if r.fit == "cover":
        return scaled, (min(scaled[0], r.width or scaled[0]), min(scaled[1], r.height or scaled[1]))
    return scaled, (r.width or scaled[0], r.height or scaled[1])  # pad, trim_pad: the whole box


def _trim(img, tolerance: int):  # PIL.Image -> PIL.Image
    """`img` without its uniform border (the colour of its top-left pixel, within `tolerance`)."""
    from PIL import Image, ImageChops

    rgb = img.convert("RGB")
    corner = Image.new("RGB", rgb.size, rgb.getpixel((0, 0)))
    diff = ImageChops.difference(rgb, corner).convert("L").point(lambda v: 255 if v > tolerance else 0)
    if img.mode == "RGBA":  # transparent pixels are border too
        diff = ImageChops.multiply(diff, img.getchannel("A").point(lambda v: 255 if v > 0 else 0))
    box = diff.getbbox()
    return img.crop(box) if box else img


def _render(decoded: Decoded, r: Rendition) -> Rendered:
    img = prepare(decoded, r)
    exif = _exif_bytes(decoded.exif) if r.keep_copyright else None
    enc = encode_rendition(img, r.format, r.quality, r.target, r.progressive, exif)
    w, h = img.size
    return Rendered(r.name, enc.data, enc.format, w, h, enc.quality, False, decoded.image.size)


def prepare(decoded: Decoded, r: Rendition):  # -> PIL.Image
    """The rendition's pixels before encoding: trimmed, scaled, cropped or padded, alpha flattened or kept."""
    from PIL import Image

    img = decoded.image
    if r.fit == "trim_pad":
        img = _trim(img, r.trim_tolerance)
    scaled, out = fit_geometry(img.size, r)
    if scaled != img.size:
        img = img.resize(scaled, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if r.fit == "cover" and out != scaled:
        left, top = (scaled[0] - out[0]) // 2, (scaled[1] - out[1]) // 2
        img = img.crop((left, top, left + out[0], top + out[1]))
    keep_alpha = r.keep_alpha and r.format in ("png", "webp", "avif", "auto") and img.mode == "RGBA"
    if r.fit in ("pad", "trim_pad"):
        canvas = Image.new("RGBA" if keep_alpha else "RGB", out, (*r.background, 0) if keep_alpha else r.background)
        offset = ((out[0] - img.size[0]) // 2, (out[1] - img.size[1]) // 2)
        canvas.paste(img, offset, img if img.mode == "RGBA" else None)
        img = canvas
    elif img.mode == "RGBA" and not keep_alpha:
        flat = Image.new("RGB", img.size, r.background)
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    return img


def _exif_bytes(tags: dict[int, str]) -> bytes | None:
    if not tags:
        return None
    from PIL import Image

    exif = Image.Exif()
    for tag, value in tags.items():
        exif[tag] = value
    return exif.tobytes()


def render_source(
    data: bytes,
    renditions: list[Rendition] | tuple[Rendition, ...],
    max_pixels: int = 50_000_000,
    max_scans: int = DEFAULT_MAX_SCANS,
    max_icc_bytes: int = DEFAULT_MAX_ICC_BYTES,
) -> list[Rendered]:
    """`render_all`, then the never-larger rule where it makes sense: same format (JPEG), same size,
    no metadata kept, and the source's own coded image smaller than ours."""
    from image_pipeline.domain.images.codec import _is_plain_jpeg, kept_jpeg

    rendered = render_all(data, renditions, max_pixels, max_scans, max_icc_bytes)
    if sniff_format(data) != "JPEG":
        return rendered
    out: list[Rendered] = []
    kept: bytes | None | bool = False  # computed once, lazily
    for r, spec in zip(rendered, renditions, strict=True):
        if r.format == "jpeg" and not spec.keep_copyright and len(r.data) > len(data):
            if kept is False:
                kept = kept_jpeg(data) if _is_plain_jpeg(data) else None
            if kept and _same_size_as_source(data, r) and len(kept) <= len(r.data):
                r = Rendered(r.name, kept, "jpeg", r.width, r.height, r.quality, True, r.source_size)
        out.append(r)
    return out


def _same_size_as_source(data: bytes, r: Rendered) -> bool:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.size == (r.width, r.height)


def score_outputs(
    data: bytes,
    specs: tuple[Rendition, ...],
    outputs: list[tuple[bytes, bool]],
    crop: int,
    max_pixels: int = 50_000_000,
    max_scans: int = DEFAULT_MAX_SCANS,
    max_icc_bytes: int = DEFAULT_MAX_ICC_BYTES,
) -> list[float | None]:
    """SSIMULACRA2 of each stored output (its bytes, and whether it is a kept original) against its own
    unencoded pixels: the source decoded again and prepared as its rendition `specs[n]` was (no specs:
    the seed's one JPEG, the source scaled to the output's size). A kept original has no score: it is
    the source's own file, not an encode of ours. Done apart from the encode, on sampled URLs only, so
    a score that fails or is slow costs the evidence, never the image."""
    from PIL import Image

    sizes = []
    for out, _kept in outputs:
        with Image.open(io.BytesIO(out)) as img:
            sizes.append(img.size)
    decoded = decode(data, max_pixels, max_scans, None if specs else max(sizes[0]), max_icc_bytes)
    scores: list[float | None] = []
    for n, ((out, kept), size) in enumerate(zip(outputs, sizes, strict=True)):
        if kept:
            scores.append(None)
            continue
        spec = specs[n] if specs else Rendition("image", "jpeg", width=size[0], height=size[1], upscale=True)
        img = prepare(decoded, spec)
        if img.size != size:  # rounding of an odd aspect: the output's own size is the truth
            img = img.resize(size, Image.Resampling.LANCZOS)
        scores.append(perceptual.score_encoded(img, out, crop))
    return scores
