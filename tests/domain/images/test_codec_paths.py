"""The fast JPEG path (simplejpeg) and the Pillow path give the same result class for the same input,
and each input goes to the path that can handle it."""

import io
import math

import pytest
from PIL import Image

from image_pipeline.domain.images.codec import ImageError, recompress, recompress_fast_jpeg, recompress_pillow
from tests.support.inputs import make_image


def psnr(a: bytes, b: bytes) -> float:
    ia, ib = (Image.open(io.BytesIO(x)).convert("RGB") for x in (a, b))
    assert ia.size == ib.size
    from PIL import ImageChops, ImageStat

    diff = ImageChops.difference(ia, ib)
    mse = sum(v * v for v in ImageStat.Stat(diff).rms) / 3  # rms per band, squared, averaged
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize(
    ("size", "mode", "kwargs"),
    [
        ((640, 480), "RGB", {}),
        ((641, 479), "RGB", {"subsampling": 0}),  # odd sizes, 4:4:4 input
        ((500, 333), "RGB", {"progressive": True}),
        ((400, 300), "L", {}),
    ],
)
def test_fast_and_pillow_paths_agree(size: tuple[int, int], mode: str, kwargs: dict) -> None:
    src = make_image("JPEG", size, mode, **kwargs)
    fast = recompress_fast_jpeg(src, quality=50)
    slow = recompress_pillow(src, "JPEG", quality=50)
    assert fast is not None and not fast.kept_original and not slow.kept_original
    assert (fast.width, fast.height) == (slow.width, slow.height) == size
    for out in (fast.data, slow.data):
        img = Image.open(io.BytesIO(out))
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == size and "exif" not in img.info
    # Same codec settings on both sides (libjpeg-turbo, q50, 4:2:0): sizes within 2 %, and the same
    # fidelity to the source (PSNR within 0.5 dB; the bytes differ by decoder rounding only).
    assert abs(len(fast.data) - len(slow.data)) <= 0.02 * len(slow.data)
    assert abs(psnr(fast.data, src) - psnr(slow.data, src)) < 0.5


def test_recompress_uses_the_fast_path_only_where_it_applies() -> None:
    plain = make_image("JPEG", (320, 240))
    assert recompress_fast_jpeg(plain) is not None
    # CMYK, rotated (EXIF orientation 6), downscaling asked: Pillow's business.
    assert recompress_fast_jpeg(make_image("JPEG", (320, 240), "CMYK")) is None
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = make_image("JPEG", (320, 240), exif=exif.tobytes())
    assert recompress_fast_jpeg(rotated) is None
    assert recompress_fast_jpeg(plain, max_dimension=100) is None
    # ... and recompress still gets them right through Pillow.
    out = recompress(rotated)
    assert (out.width, out.height) == (240, 320)
    small = recompress(make_image("JPEG", (1600, 1200)), max_dimension=400)
    assert (small.width, small.height) == (400, 300)
    cmyk = recompress(make_image("JPEG", (320, 240), "CMYK"))
    assert Image.open(io.BytesIO(cmyk.data)).mode == "RGB"


def test_fast_path_keeps_a_smaller_plain_original() -> None:
    tiny = make_image("JPEG", (64, 48), quality=20)
    out = recompress(tiny, quality=90)
    assert out.kept_original and out.data == tiny
    with_exif = make_image("JPEG", (64, 48), quality=20, exif=Image.Exif().tobytes())
    assert not recompress(with_exif, quality=90).kept_original  # metadata must go


def test_fast_path_refuses_bombs_and_defers_corrupt_input_to_pillow() -> None:
    big = make_image("JPEG", (400, 300))
    with pytest.raises(ImageError, match="over the limit"):
        recompress(big, max_pixels=1000)
    truncated = big[: len(big) // 2]
    assert recompress_fast_jpeg(truncated) is None
    with pytest.raises(ImageError, match="corrupt or truncated"):
        recompress(truncated)
    with pytest.raises(ImageError, match="corrupt or truncated"):
        recompress(truncated, fast_jpeg=False)
