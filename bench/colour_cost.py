"""What colour management costs per image: `recompress` on one core for a photo-like image saved
untagged, sRGB-tagged, Display P3, Adobe RGB (PNG) and CMYK (with and without a profile), against the
codec at another git revision (`--rev`, by default main before colour management), alternating.
A benchmark, not a test.

    python -m bench.colour_cost                       # 12 MP
    python -m bench.colour_cost --size 1600x1200
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

from PIL import Image, ImageCms

from bench.photos import make_photo
from tests.support import colour_chart, icc


def inputs(size: tuple[int, int]) -> dict[str, bytes]:
    photo = Image.open(io.BytesIO(make_photo(1, size)))
    photo.load()
    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    p3 = Image.fromarray(colour_chart.render_rgb(photo, "display-p3"))
    adobe = Image.fromarray(colour_chart.render_rgb(photo, "adobe-rgb-1998"))
    swop = colour_chart.SWOP.read_bytes()
    cmyk = colour_chart.render_cmyk(photo, swop, refine=False)
    jpeg = {"quality": 90}
    return {
        "sRGB JPEG, untagged (fast path)": colour_chart.save(photo, "JPEG", **jpeg),
        "sRGB JPEG, tagged (fast path)": colour_chart.save(photo, "JPEG", srgb_icc, **jpeg),
        "Display P3 JPEG (fast path)": colour_chart.save(p3, "JPEG", icc.rgb_profile("display-p3"), **jpeg),
        "Adobe RGB PNG": colour_chart.save(adobe, "PNG", icc.rgb_profile("adobe-rgb-1998")),
        "CMYK JPEG, SWOP profile": colour_chart.save(cmyk, "JPEG", swop, **jpeg),
        "CMYK JPEG, untagged": colour_chart.save(cmyk, "JPEG", **jpeg),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="dca8442", help="the codec.py to compare with (default: main before colour)")
    parser.add_argument("--size", default="4000x3000", help="WxH of the photo (default 4000x3000, 12 MP)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    from image_pipeline.domain.images import codec

    codecs = {args.rev: colour_chart._codec_at(args.rev), "this tree": codec}
    print(f"{size[0]}x{size[1]}, quality 50, median of {args.repeat} (the codecs alternate), one thread")
    print(f"{'input':34} " + " ".join(f"{name + ' ms':>14}" for name in codecs))
    for name, data in inputs(size).items():
        times: dict[str, list[float]] = {k: [] for k in codecs}
        for c in codecs.values():
            c.recompress(data)  # warm: transforms built and cached
        for _ in range(args.repeat):
            for k, c in codecs.items():
                start = time.perf_counter()
                c.recompress(data)
                times[k].append(time.perf_counter() - start)
        print(f"{name:34} " + " ".join(f"{statistics.median(t) * 1000:14.1f}" for t in times.values()))


if __name__ == "__main__":
    main()
