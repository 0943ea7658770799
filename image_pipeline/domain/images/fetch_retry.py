"""Transient download failures tried again inside the run: a wrapper around one attempt (`fetch`).

An image host that answers 429, 502, 503 or 504, times out or drops the connection usually answers the
next try; failing the URL would leave it for the hourly retry schedule. Each URL gets
`IMGPIPE_FETCH_RETRIES` more tries. Between tries it waits what the host's `Retry-After` asks (seconds
or an HTTP date), bounded by `IMGPIPE_FETCH_RETRY_AFTER_MAX`, or else exponential backoff with full
jitter (a uniform delay in [0, min(cap, base * 2^n)]), which spreads the retries of the many URLs that
failed together instead of sending them back in step. A host that pushes back (429, 503) is paused in
its per-host limiter for that delay, so the other URLs of that host wait too.

The attempt is a callable, so whatever one attempt is (a conditional GET, another client) stays out of
this loop. What is not worth retrying (a 404, a refused URL, an oversized body) returns or raises at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from image_pipeline.domain.images.fetch import Fetched
from image_pipeline.domain.images.host_limits import HostLimiter
from image_pipeline.domain.images.url_policy import FetchError, FetchNetworkError, FetchTimeout

if TYPE_CHECKING:
    from image_pipeline.domain.settings import Settings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})  # the host or a gateway in front of it is busy or away
PUSHBACK_STATUSES = frozenset({429, 503})  # the host itself asks to slow down: pause all of its URLs


class HttpStatusError(FetchError):
    """The image server answered with a status that is not an image and that retrying does not change."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status} from image server")
        self.status = status


class FetchGaveUp(FetchError):
    """Every try failed transiently; `failure_class` says how the last one did (transient or timeout)."""

    def __init__(self, message: str, failure_class: str, attempts: int) -> None:
        super().__init__(message)
        self.failure_class, self.attempts = failure_class, attempts


@dataclass(frozen=True)
class FetchRetry:
    """How a URL's transient failures are tried again (IMGPIPE_FETCH_RETRY*)."""

    retries: int = 3  # tries after the first
    backoff: float = 0.5  # seconds: the cap of the first jittered wait, doubled each try
    backoff_max: float = 10.0  # seconds: the largest cap of a jittered wait
    retry_after_max: float = 30.0  # seconds: the longest Retry-After honoured (longer ones are cut to it)

    @classmethod
    def from_settings(cls, s: Settings) -> FetchRetry:
        return cls(s.fetch_retries, s.fetch_retry_backoff, s.fetch_retry_backoff_max, s.fetch_retry_after_max)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        return (rng or random).uniform(0.0, min(self.backoff_max, self.backoff * 2 ** (attempt - 1)))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date, RFC 9110 10.2.3) in seconds from `now`;
    None when absent or unreadable (the backoff applies then); a date in the past is 0."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; "-0000" parses naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def fetch_with_retries(
    attempt: Callable[[], Awaitable[Fetched]],
    retry: FetchRetry,
    limiter: HostLimiter | None = None,
    *,
    what: str = "",
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Fetched:
    """`attempt()` until it returns an answer that is not a retryable status, at most `retry.retries`
    times more. Raises FetchGaveUp when every try failed transiently, and whatever else `attempt`
    raises (refused, too large, a corrupt body) at once. `what` names the URL in the log."""
    tries = max(0, retry.retries) + 1
    for n in range(1, tries + 1):
        fetched: Fetched | None = None
        try:
            fetched = await attempt()
        except (FetchTimeout, FetchNetworkError) as exc:
            kind = "timeout" if isinstance(exc, FetchTimeout) else "transient"
            why, hint, cause = str(exc), None, exc
        else:
            if fetched.status not in RETRY_STATUSES:
                return fetched
            kind, why, cause = "transient", f"HTTP {fetched.status} from image server", None
            hint = retry_after_seconds(fetched.retry_after)
        if n == tries:
            raise FetchGaveUp(f"{why} (gave up after {n} tries)", kind, n) from cause
        delay = retry.delay(n, hint)
        if fetched is not None and fetched.status in PUSHBACK_STATUSES and limiter is not None and fetched.host:
            await limiter.pause(fetched.host, delay)
        log.info("%s: try %d of %d failed (%s); next in %.2f s", what or "fetch", n, tries, why, delay)
        await sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
