"""Why a URL failed, as a class a caller (and a metric) can act on, next to the error in words.

- `transient`: the host kept failing in ways that usually pass (429, 5xx gateways, resets) after the
  in-run retries, or its download slots stayed taken: the retry schedule may still get it;
- `timeout`: the download was too slow on every try;
- `permanent`: an HTTP answer retrying does not change (404, 410, 403, ...), an unresolvable host, a
  corrupt transfer encoding, too many redirects;
- `refused`: the URL breaks the fetch policy (scheme, port, private address) or a size limit;
- `invalid_image`: the body is not an image we decode, or it is an image bomb;
- `internal`: our own fault (an unexpected error, the output could not be stored).

`classify_failure` is the one place an error becomes its class.
"""

from __future__ import annotations

from typing import Literal, get_args

from image_pipeline.domain.images.codec import ImageError
from image_pipeline.domain.images.fetch_retry import FetchGaveUp
from image_pipeline.domain.images.host_limits import SlotWaitTimeout
from image_pipeline.domain.images.url_policy import (
    FetchError,
    FetchNetworkError,
    FetchRefused,
    FetchTimeout,
    FetchTooLarge,
)

FailureClass = Literal["transient", "timeout", "permanent", "refused", "invalid_image", "internal"]
FAILURE_CLASSES: tuple[str, ...] = get_args(FailureClass)


def classify_failure(exc: BaseException) -> FailureClass:
    """The failure class of the error that failed a URL (any exception: unknown ones are `internal`)."""
    if isinstance(exc, FetchGaveUp):
        return "timeout" if exc.failure_class == "timeout" else "transient"
    if isinstance(exc, FetchTimeout):
        return "timeout"
    if isinstance(exc, FetchNetworkError | SlotWaitTimeout):
        return "transient"
    if isinstance(exc, FetchRefused | FetchTooLarge):
        return "refused"
    if isinstance(exc, FetchError):
        return "permanent"
    if isinstance(exc, ImageError):
        return "invalid_image"
    return "internal"
