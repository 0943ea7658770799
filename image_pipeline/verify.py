"""Facts about a request's stored results that the pipeline's asset checks assert (plain Python)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from image_pipeline.storage import ObjectNotFound, ObjectStore
from image_pipeline.store.models import ImageResult


@dataclass
class Coverage:
    expected: int
    recorded: int
    missing: list[int] = field(default_factory=list)  # indices of URLs without a result

    @property
    def ok(self) -> bool:
        return not self.missing


def coverage(results: Sequence[ImageResult], url_count: int) -> Coverage:
    """Every input URL (index 0..url_count-1) has a recorded result, done or failed."""
    seen = {r.idx for r in results}
    return Coverage(url_count, len(seen), [i for i in range(url_count) if i not in seen])


def sample_evenly(items: Sequence, size: int) -> list:
    """At most `size` items spread over the whole sequence (first and last included), in order."""
    if len(items) <= size:
        return list(items)
    if size <= 1:
        return list(items[:size])
    step = (len(items) - 1) / (size - 1)
    return [items[round(i * step)] for i in range(size)]


@dataclass
class DecodeReport:
    done: int
    checked: int
    bad: list[tuple[int, str]] = field(default_factory=list)  # (index, why)

    @property
    def ok(self) -> bool:
        return not self.bad


def decode_outputs(store: ObjectStore, results: Sequence[ImageResult], sample: int) -> DecodeReport:
    """Stored outputs of done URLs open and fully decode as JPEG (an even sample of `sample` when more)."""
    from PIL import Image

    done = [r for r in results if r.status == "done"]
    picked = sample_evenly(done, sample)
    report = DecodeReport(len(done), len(picked))
    for r in picked:
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
        except Exception as exc:  # noqa: BLE001 (any decoder error is the finding)
            report.bad.append((r.idx, f"does not decode: {exc}"))
    return report


@dataclass
class SizeReport:
    done: int
    kept_original: int
    larger: list[tuple[int, int, int]] = field(default_factory=list)  # (index, bytes_in, bytes_out)

    @property
    def ok(self) -> bool:
        return not self.larger


def no_larger_outputs(results: Sequence[ImageResult]) -> SizeReport:
    """No output is larger than its input, except where the original was kept (recorded as such)."""
    done = [r for r in results if r.status == "done"]
    report = SizeReport(len(done), sum(1 for r in done if r.kept_original))
    for r in done:
        if not r.kept_original and (r.bytes_out or 0) > (r.bytes_in or 0):
            report.larger.append((r.idx, r.bytes_in or 0, r.bytes_out or 0))
    return report
