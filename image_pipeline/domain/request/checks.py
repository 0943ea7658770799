"""Facts about a request's stored results that the pipeline's asset checks assert (plain Python).

One pass over the results in index order, as light rows read in batches (a 100,000-URL request never
holds its results in memory): coverage, sizes, and the even sample of outputs to decode.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from image_pipeline.domain.objects import ObjectNotFound, ObjectStore


class ResultFacts(Protocol):
    """What the checks read of one result (a row of `db.requests.iter_result_facts`)."""

    idx: int
    status: str
    output_key: str | None
    bytes_in: int | None
    bytes_out: int | None
    kept_original: bool


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
class Scan:
    coverage: Coverage
    sizes: SizeReport
    sample: list  # the done results picked for decoding, in order


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
    coverage, sizes = Coverage(url_count, 0), SizeReport(0, 0)
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
        if not r.kept_original and (r.bytes_out or 0) > (r.bytes_in or 0):
            sizes.larger.append((r.idx, r.bytes_in or 0, r.bytes_out or 0))
    coverage.missing.extend(range(expected, url_count))
    return Scan(coverage, sizes, picked)


def decode_outputs(store: ObjectStore, picked: Sequence[ResultFacts], done: int) -> DecodeReport:
    """The picked outputs (of `done` done URLs) open and fully decode as JPEG."""
    from PIL import Image

    report = DecodeReport(done, len(picked))
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
        except Exception as exc:  # any decoder error is the finding
            report.bad.append((r.idx, f"does not decode: {exc}"))
    return report
