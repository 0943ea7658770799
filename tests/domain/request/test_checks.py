"""The asset checks' single streamed pass over a request's results."""

from types import SimpleNamespace

from image_pipeline.domain.request.checks import even_positions, scan


def result(idx: int, status: str = "done", bytes_out: int = 5, kept: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        idx=idx,
        status=status,
        output_key=f"k{idx}",
        bytes_in=10,
        bytes_out=bytes_out,
        kept_original=kept,
        renditions=None,
    )


def test_one_pass_finds_gaps_larger_outputs_and_an_even_sample() -> None:
    rows = [result(i, "done" if i % 3 else "failed", 20 if i in (4, 7) else 5, i == 7) for i in range(20)]
    rows = [r for r in rows if r.idx not in (5, 6, 19)]
    done = sum(r.status == "done" for r in rows)
    found = scan(iter(rows), 20, done, 4)  # an iterator: read once, never as a list
    assert found.coverage.missing == [5, 6, 19] and found.coverage.recorded == 17
    assert (found.sizes.done, found.sizes.kept_original, found.sizes.larger) == (11, 1, [(4, 10, 20)])
    done_idx = [r.idx for r in rows if r.status == "done"]
    assert [r.idx for r in found.sample] == [done_idx[p] for p in even_positions(done, 4)]
    assert found.sample[0].idx == done_idx[0] and found.sample[-1].idx == done_idx[-1]


def test_small_requests_are_sampled_whole() -> None:
    found = scan(iter([result(0), result(1)]), 2, 2, 200)
    assert [r.idx for r in found.sample] == [0, 1] and found.coverage.ok and found.sizes.ok
