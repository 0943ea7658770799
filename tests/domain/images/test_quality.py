"""Perceptual quality (issue 16): SSIMULACRA2 scores, the per-image search for a target score, `auto`
choosing the smallest format at one perceived quality, and the scored sample of a request."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bench.photos import make_photo
from image_pipeline.domain.images import quality
from image_pipeline.domain.images.encoders import encode
from image_pipeline.domain.images.renditions import Rendition, render_all, render_source, score_outputs
from image_pipeline.domain.request.chunks import _scores_of, score_table

PHOTO = make_photo(7, (240, 180), quality=95)  # the whole photo is inside one score crop


def _scored(data: bytes, specs: tuple[Rendition, ...], crop: int = 256):
    """Each rendition of `data` with the score of its stored output, as a sampled URL gets them."""
    outs = render_source(data, specs)
    return list(zip(outs, score_outputs(data, specs, [(o.data, o.kept_original) for o in outs], crop), strict=True))


def _rgb(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def test_score_ranks_distortions_and_an_exact_copy_is_near_perfect() -> None:
    ref = _rgb(PHOTO)
    exact = quality.score(ref, ref.copy())
    q90, q30 = (quality.score_encoded(ref, encode(ref.copy(), "jpeg", q)) for q in (90, 30))
    assert exact is not None and exact > 99
    assert q90 is not None and q30 is not None and exact > q90 > q30
    assert quality.score(ref.resize((8, 8)), ref.resize((8, 8))) is None  # below what the metric can judge


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_a_target_is_reached_at_the_lowest_quality(fmt: str) -> None:
    (low, low_score), (high, high_score) = (_scored(PHOTO, (Rendition("r", fmt, target=t),))[0] for t in (60, 85))
    for out, score, target in ((low, low_score, 60), (high, high_score, 85)):
        # The search judges the crop encoded alone; the stored output's own crop lands within a few points.
        assert score is not None and score >= target - 4, (fmt, target, out.quality, score)
    assert low.quality < high.quality and len(low.data) < len(high.data)
    # The lowest quality: three steps below it misses the target on the crop.
    ref = quality.centre_crop(_rgb(PHOTO), 256)
    below = quality.score_encoded(ref, encode(ref.copy(), fmt, max(1, high.quality - 2 * quality.QUALITY_STEP)))
    assert below is not None and below < 85


def test_auto_takes_the_smallest_format_at_the_target() -> None:
    [auto] = render_all(PHOTO, [Rendition("a", "auto", target=70)])
    each = {f: render_all(PHOTO, [Rendition("a", f, target=70)])[0] for f in ("jpeg", "webp", "avif")}
    assert auto.format == min(each, key=lambda f: len(each[f].data))
    assert len(auto.data) == min(len(o.data) for o in each.values())
    assert auto.quality == each[auto.format].quality
    with pytest.raises(ValueError, match="target"):
        Rendition("a", "auto")


def test_a_quality_number_without_target_is_used_as_given() -> None:
    [(out, score)] = _scored(PHOTO, (Rendition("r", "webp", 42),), crop=128)
    assert out.quality == 42 and score is not None and 0 < score < 100


def test_the_seed_output_is_scored_against_the_source_decoded_again() -> None:
    ref = _rgb(PHOTO).resize((160, 120), Image.Resampling.LANCZOS)
    small = encode(ref, "jpeg", 50)
    [s50] = score_outputs(PHOTO, (), [(small, False)], 256)
    [s95] = score_outputs(PHOTO, (), [(encode(ref.copy(), "jpeg", 95), False)], 256)
    assert s50 is not None and s95 is not None and s95 > s50 > 30


def test_a_kept_original_has_no_score() -> None:
    tiny = make_photo(3, (200, 150), quality=40)  # already smaller than our q90 re-encode
    [(out, score)] = _scored(tiny, (Rendition("r", "jpeg", 90),))
    assert out.kept_original and score is None


def test_request_scores_per_rendition() -> None:
    done = [
        {"renditions": [{"name": "zoom", "score": 80.0}, {"name": "thumb", "score": 70.0}]},
        {"renditions": [{"name": "zoom", "score": None}, {"name": "thumb", "score": None}]},
        {"renditions": None, "score": 66.5},
    ]
    chunk_a = _scores_of(done[:2])
    chunk_b = _scores_of([{"renditions": [{"name": "zoom", "score": 90.0}]}])
    assert chunk_a == {"zoom": [80.0], "thumb": [70.0]}
    assert _scores_of(done[2:]) == {"image": [66.5]}
    assert score_table([chunk_a, chunk_b]) == [("zoom", 2, 85.0, 80.0), ("thumb", 1, 70.0, 70.0)]
