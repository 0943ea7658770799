import random

import pytest

from image_pipeline.domain.settings import Settings, parse_retry_schedule
from image_pipeline.domain.webhooks.delivery import RetryPolicy, outcome_of
from image_pipeline.domain.webhooks.events import Attempt


def test_schedule_parsing() -> None:
    assert parse_retry_schedule("1,1,2") == [1, 1, 2]
    assert parse_retry_schedule(" 5, 30,3600*3 ") == [5, 30, 3600, 3600, 3600]
    assert parse_retry_schedule("") == []
    for bad in ("x", "5*0", "-1", "1*y"):
        with pytest.raises(ValueError):
            parse_retry_schedule(bad)


def test_default_schedule_retries_for_about_a_day() -> None:
    delays = parse_retry_schedule(Settings(_env_file=None).webhook_retry_schedule)
    assert delays[:6] == [5, 30, 120, 600, 1800, 3600] and set(delays[6:]) == {3600}
    assert 23 * 3600 < sum(delays) <= 24 * 3600


def test_backoff_has_jitter_and_ends() -> None:
    policy, rng = RetryPolicy((10.0, 20.0), jitter=0.2), random.Random(7)
    first = [policy.next_delay(1, rng) for _ in range(200)]
    assert all(8.0 <= d <= 12.0 for d in first) and len(set(first)) > 100
    assert 16.0 <= policy.next_delay(2, rng) <= 24.0
    assert policy.next_delay(3, rng) is None  # two retries, then give up


@pytest.mark.parametrize(
    ("attempt", "outcome"),
    [
        (Attempt(200, None, 5), "delivered"),
        (Attempt(204, None, 5), "delivered"),
        (Attempt(410, "HTTP 410", 5), "gone"),
        (Attempt(500, "HTTP 500", 5), "retry"),
        (Attempt(503, "HTTP 503", 5), "retry"),
        (Attempt(429, "HTTP 429", 5), "retry"),
        (Attempt(408, "HTTP 408", 5), "retry"),
        (Attempt(None, "timed out", 5), "retry"),
        (Attempt(None, "network error: ConnectError", 5), "retry"),
        (Attempt(302, "HTTP 302", 5), "failed"),
        (Attempt(400, "HTTP 400", 5), "failed"),
        (Attempt(None, "refused: private address", 5, refused=True), "failed"),
    ],
)
def test_outcomes(attempt: Attempt, outcome: str) -> None:
    assert outcome_of(attempt) == outcome
