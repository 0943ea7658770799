"""Facts about a request's stored results that the pipeline's asset checks assert (plain Python).

One pass over the results in index order, as light rows read in batches (a 100,000-URL request never
holds its results in memory): coverage, sizes, and the even sample of outputs to decode.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from image_pipeline.domain.objects import ObjectNotFound, ObjectStore
from image_pipeline.domain.profiles import Profile, RenditionSpec


class ResultFacts(Protocol):
    """What the checks read of one result (a row of `db.requests.iter_result_facts`)."""

    idx: int
    status: str
    output_key: str | None
    bytes_in: int | None
    bytes_out: int | None
    kept_original: bool
    renditions: str | None  # JSON: a profile's renditions (see UrlResult.renditions)
    url: str
    sync_via: str | None  # the sync memory: how its outputs came (images.sync.VIA)


@dataclass
class Coverage:
    expected: int
    recorded: int
    missing: list[int] = field(default_factory=list)  # indices of URLs without a result

    @property
    def ok(self) -> bool:
        return not self.missing


@dataclass
class SizeReport:
    done: int
    kept_original: int
    larger: list[tuple[int, int, int]] = field(default_factory=list)  # (index, bytes_in, bytes_out)

    @property
    def ok(self) -> bool:
        return not self.larger


@dataclass
class DecodeReport:
    done: int
    checked: int
    bad: list[tuple[int, str]] = field(default_factory=list)  # (index, why)

    @property
    def ok(self) -> bool:
        return not self.bad


@dataclass
class ValidatorReport:
    """Conditional fetches answered 200 with the very bytes the validators described: the origin ignores
    `If-None-Match` / `If-Modified-Since` (often a new ETag per response), so every sync downloads the
    whole body again (the content hash still spares the encode)."""

    conditional: int = 0  # fetches that sent validators and got an answer (304 or 200)
    ignored: list[tuple[int, str]] = field(default_factory=list)  # (index, URL)

    @property
    def ok(self) -> bool:
        return not self.ignored

    def hosts(self) -> dict[str, int]:
        from urllib.parse import urlsplit

        counts: dict[str, int] = {}
        for _, url in self.ignored:
            host = urlsplit(url).netloc
            counts[host] = counts.get(host, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


@dataclass
class Scan:
    coverage: Coverage
    sizes: SizeReport
    sample: list  # the done results picked for decoding, in order
    validators: ValidatorReport = field(default_factory=ValidatorReport)


def even_positions(n: int, size: int) -> list[int]:
    """At most `size` positions spread over 0..n-1 (first and last included), in order."""
    if n <= size:
        return list(range(n))
    if size <= 1:
        return list(range(size))
    step = (n - 1) / (size - 1)
    return [round(i * step) for i in range(size)]


def scan(results: Iterable[ResultFacts], url_count: int, done_total: int, sample: int) -> Scan:
    """Coverage (every index 0..url_count-1 has a result), sizes (no output larger than its input unless
    the original was kept) and an even sample of `sample` of the `done_total` done results, in one pass
    over `results` sorted by index."""
    from image_pipeline.domain.images.sync import NOT_MODIFIED, VALIDATORS_IGNORED

    coverage, sizes, validators = Coverage(url_count, 0), SizeReport(0, 0), ValidatorReport()
    wanted = iter(even_positions(done_total, sample))
    next_pick = next(wanted, None)
    picked: list = []
    expected = 0
    for r in results:
        coverage.recorded += 1
        if expected <= r.idx < url_count:
            coverage.missing.extend(range(expected, r.idx))
            expected = r.idx + 1
        if r.status != "done":
            continue
        if sizes.done == next_pick:
            picked.append(r)
            next_pick = next(wanted, None)
        sizes.done += 1
        sizes.kept_original += bool(r.kept_original)
        via = getattr(r, "sync_via", None)
        if via in (NOT_MODIFIED, VALIDATORS_IGNORED):
            validators.conditional += 1
        if via == VALIDATORS_IGNORED:
            validators.ignored.append((r.idx, r.url))
        # A profile's renditions together may outweigh the source (a zoom image and a square): the rule
        # is the seed output's, one JPEG that must never be larger than what came in.
        if not r.renditions and not r.kept_original and (r.bytes_out or 0) > (r.bytes_in or 0):
            sizes.larger.append((r.idx, r.bytes_in or 0, r.bytes_out or 0))
    coverage.missing.extend(range(expected, url_count))
    return Scan(coverage, sizes, picked, validators)


def decode_outputs(
    store: ObjectStore, picked: Sequence[ResultFacts], done: int, profile: Profile | None = None
) -> tuple[DecodeReport, DecodeReport]:
    """The picked outputs (of `done` done URLs) open and fully decode in their recorded format (JPEG for
    the seed's output), and (second report) a profile's renditions follow their specs: sRGB, the fit's
    size rule, never upscaled unless asked."""
    from PIL import Image

    report, rules = DecodeReport(done, len(picked)), DecodeReport(done, 0)
    specs = {s.name: s for s in profile.renditions} if profile else {}
    for r in picked:
        if r.renditions:
            for made in json.loads(r.renditions):
                rules.checked += 1
                _check_rendition(store, r.idx, made, specs.get(made["name"]), report, rules)
            continue
        if not r.output_key:
            report.bad.append((r.idx, "no output object recorded"))
            continue
        try:
            with Image.open(io.BytesIO(store.get(r.output_key))) as img:
                img.load()
                if img.format != "JPEG":
                    report.bad.append((r.idx, f"stored as {img.format}, not JPEG"))
        except ObjectNotFound:
            report.bad.append((r.idx, "output object is missing"))
        except Exception as exc:  # any decoder error is the finding
            report.bad.append((r.idx, f"does not decode: {exc}"))
    return report, rules


_PIL_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF", "png": "PNG"}


def _check_rendition(
    store: ObjectStore, idx: int, made: dict, spec: RenditionSpec | None, decoded: DecodeReport, rules: DecodeReport
) -> None:
    from PIL import Image

    where = f"{made['name']}"
    try:
        with Image.open(io.BytesIO(store.get(made["key"]))) as img:
            img.load()
            fmt, size, mode, icc = img.format, img.size, img.mode, img.info.get("icc_profile")
    except ObjectNotFound:
        decoded.bad.append((idx, f"{where}: output object is missing"))
        return
    except Exception as exc:  # any decoder error is the finding
        decoded.bad.append((idx, f"{where}: does not decode: {exc}"))
        return
    if fmt != _PIL_FORMATS.get(made["format"]):
        decoded.bad.append((idx, f"{where}: stored as {fmt}, recorded as {made['format']}"))
    if size != (made["width"], made["height"]):
        rules.bad.append((idx, f"{where}: {size[0]}x{size[1]}, recorded as {made['width']}x{made['height']}"))
    if mode not in ("RGB", "RGBA", "L") or (icc and not _is_srgb(icc)):
        rules.bad.append((idx, f"{where}: not sRGB (mode {mode}{', a non-sRGB ICC profile' if icc else ''})"))
    if spec is None:
        rules.bad.append((idx, f"{where}: not a rendition of the request's profile"))
        return
    w, h = size
    if spec.fit in ("pad", "trim_pad", "cover") and spec.width and spec.height:
        exact = spec.fit != "cover"
        if (exact and (w, h) != (spec.width, spec.height)) or (not exact and (w > spec.width or h > spec.height)):
            rules.bad.append((idx, f"{where}: {w}x{h} breaks {spec.fit} {spec.width}x{spec.height}"))
    elif (spec.width and w > spec.width) or (spec.height and h > spec.height):
        rules.bad.append((idx, f"{where}: {w}x{h} is outside its box {spec.width}x{spec.height}"))
    src = (made.get("source_width") or 0, made.get("source_height") or 0)
    if not spec.upscale and spec.fit in ("inside", "cover") and all(src) and (w > src[0] or h > src[1]):
        rules.bad.append((idx, f"{where}: upscaled from {src[0]}x{src[1]} to {w}x{h}"))


def _is_srgb(icc: bytes) -> bool:
    from PIL import ImageCms

    try:
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except (OSError, ImageCms.PyCMSError):
        return False
    return "srgb" in description.lower().replace(" ", "")
