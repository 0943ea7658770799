"""Webhook events: the final answer a caller gets for a request, signed per the Standard Webhooks spec.

Headers `webhook-id`, `webhook-timestamp`, `webhook-signature` (v1, HMAC-SHA256 over
`id.timestamp.body`) are produced by the `standardwebhooks` package. Deliveries use the SSRF-safe
fetcher and never follow redirects. Queueing and the delivery log live in `outbox.py`, retries in `delivery.py`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from image_pipeline.domain.catalog.csv_input import ProductRow
from image_pipeline.domain.db.models import ImageRequest
from image_pipeline.domain.images.fetch import fetch, make_client
from image_pipeline.domain.images.url_policy import FetchError, FetchPolicy, FetchRefused

if TYPE_CHECKING:
    from image_pipeline.domain.settings import Settings


@dataclass(frozen=True)
class EventLimits:
    """Up to which size the final event lists every product (`IMGPIPE_WEBHOOK_MAX_PRODUCTS` / `_MAX_URLS`).

    A larger request's event lists none (`products: null`, `products_omitted: true`) and the receiver
    reads `output_csv_url`, which has every product: the event of a 100,000-URL request would otherwise
    be one JSON document of about 14 MB (about 140 bytes per URL), built in memory, stored in the outbox
    and POSTed on each retry, and most receivers refuse bodies that large (nginx's default
    `client_max_body_size` is 1 MB). 1,000 products of 10 URLs is about 1.4 MB; the URL limit bounds
    products with many (or long) URLs. Decided on the request's counts, before anything is read.
    """

    max_products: int = 1000
    max_urls: int = 10_000

    @classmethod
    def from_settings(cls, s: Settings) -> EventLimits:
        return cls(s.webhook_max_products, s.webhook_max_urls)

    def lists_products(self, products: int, urls: int) -> bool:
        return products <= self.max_products and urls <= self.max_urls


UPDATED_EVENT = "request.updated"  # a re-run of a request whose final event was already sent has ended


def event_type_for(status: str) -> str:
    return f"request.{status}"


def event_id_for(request_id: str, event_type: str) -> str:
    """Stable per (request, event): every retry of one event carries the same `webhook-id`."""
    return "msg_" + hashlib.sha256(f"{request_id}:{event_type}".encode()).hexdigest()[:32]


class OrderedLookup(Protocol):
    def get(self, idx: int) -> Any | None: ...


def products_of(rows: Iterable[ProductRow], results: Mapping[int, Any] | OrderedLookup, public_url) -> list[dict]:
    """Per product: input URLs, output URLs (None where that URL failed) and per-URL errors.

    `results.get(idx)` gives anything with `status`, `output_key` and `error` (ORM rows or light
    tuples), or None; it is asked once per URL, in ascending idx (so a streamed cursor will do).
    """
    out, idx = [], 0
    for row in rows:
        outputs, errors = [], []
        for url in row.urls:
            r = results.get(idx)
            if r is not None and r.status == "done" and r.output_key:
                outputs.append(public_url(r.output_key))
            else:
                outputs.append(None)
                errors.append(
                    {
                        "url": url,
                        "error": r.error if r else "not processed",
                        "failure_class": getattr(r, "failure_class", None) if r else None,
                    }
                )
            idx += 1
        out.append(
            {
                "serial": row.serial,
                "name": row.name,
                "input_urls": list(row.urls),
                "output_urls": outputs,
                "errors": errors,
            }
        )
    return out


def build_event(
    req: ImageRequest,
    products: list[dict] | None,
    api_base_url: str,
    *,
    omitted: bool = False,
    event_type: str | None = None,
) -> dict:
    """`{type, timestamp, request_id, status, data:{counts, output_csv_url, products, products_omitted,
    products_total}}`.

    `omitted`: the request is over the event's limits (`EventLimits`), so `products` is null and the
    receiver reads the output CSV; `products_total` says how many there are either way.
    `products_truncated` is the older name of `products_omitted` (events once listed the first 1,000
    products and set it), kept so receivers that test it still fall back to the CSV.
    `event_type`: `request.<status>` unless given (`request.updated` after a re-run).
    """
    output = f"{api_base_url}/api/requests/{req.id}/output.csv" if req.output_csv_key else None
    return {
        "type": event_type or event_type_for(req.status),
        "timestamp": datetime.now(UTC).isoformat(),
        "request_id": req.id,
        "status": req.status,
        "data": {
            "counts": {
                "total": req.url_count,
                "done": req.done_count,
                "failed": req.failed_count,
                "rows": req.row_count,
                "bytes_in": req.bytes_in,
                "bytes_out": req.bytes_out,
            },
            "output_csv_url": output,
            "status_url": f"{api_base_url}/api/status/{req.id}",
            "error": req.error,
            "products": None if omitted else (products or []),
            "products_omitted": omitted,
            "products_total": req.row_count if omitted or products is None else len(products),
            "products_truncated": omitted,
        },
    }


Secrets = str | Sequence[str] | None


def signed_headers(secret: Secrets, event_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers; one `v1,` signature per secret, space-separated (as the spec allows:
    during a rotation the tenant's old and new secret both sign, and a receiver with either accepts)."""
    now = now or datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
    }
    keys = [secret] if isinstance(secret, str) else list(secret or ())
    keys = [k for k in keys if k]
    if keys:
        from standardwebhooks.webhooks import Webhook

        headers["webhook-signature"] = " ".join(Webhook(k).sign(event_id, now, body) for k in keys)
    return headers


@dataclass
class Attempt:
    """The outcome of one POST: an HTTP status, or an error (timeout, connection, refused URL)."""

    status_code: int | None
    error: str | None
    duration_ms: int
    refused: bool = False  # the URL breaks the fetch policy: no retry can succeed

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def deliver(url: str, body: str, event_id: str, secret: Secrets, policy: FetchPolicy) -> Attempt:
    """One signed POST of one event body (no redirects followed); never raises for network problems.

    The signature covers `id.timestamp.body` with a fresh timestamp per attempt (receivers reject stale
    ones), while `webhook-id` and the body stay the same on every retry.
    """
    start = time.monotonic()
    async with make_client(policy, max_connections=2) as client:
        try:
            resp = await fetch(
                client,
                url,
                policy,
                method="POST",
                content=body.encode(),
                # Only the status is used: the answer is asked uncompressed and read to a few KB at most.
                headers={**signed_headers(secret, event_id, body), "Accept-Encoding": "identity"},
                follow_redirects=False,
                peek=policy.webhook_response_bytes,
                require_https=True,  # checked at upload too; re-checked here (settings may have changed)
            )
            code, err, refused = resp.status, None if 200 <= resp.status < 300 else f"HTTP {resp.status}", False
        except FetchRefused as exc:
            code, err, refused = None, str(exc), True
        except FetchError as exc:
            code, err, refused = None, str(exc), False
    return Attempt(code, err, int((time.monotonic() - start) * 1000), refused)


def event_body(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"))
