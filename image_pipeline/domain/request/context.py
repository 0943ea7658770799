"""What every step of a request works with: its context (database, objects, cache, policies) and the
one exception that fails a request as a whole. Built by `image_pipeline.domain.services.build_context`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from image_pipeline.domain.catalog.csv_input import CsvLimits, ProductRow
from image_pipeline.domain.catalog.rows import RowsMissing, open_rows
from image_pipeline.domain.db import requests as repo
from image_pipeline.domain.images.url_policy import FetchPolicy
from image_pipeline.domain.images.worker import ProcessOptions
from image_pipeline.domain.objects import ObjectStore
from image_pipeline.domain.request.status_cache import StatusCache
from image_pipeline.domain.status import status_document
from image_pipeline.domain.webhooks.delivery import RetryPolicy
from image_pipeline.domain.webhooks.events import EventLimits


class RequestFailed(Exception):
    """The request as a whole cannot be processed (e.g. its input vanished); the reason is user-facing."""


class RequestCanceled(RequestFailed):
    """Its owner canceled the request: the run stops here. The request is already final (`canceled`,
    its event queued by the cancel), so failing it changes nothing and sends nothing."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request {request_id} was canceled by its owner")


@dataclass
class RequestContext:
    """Everything a step needs; built from Dagster resources or directly in tests."""

    sessions: sessionmaker[Session]
    store: ObjectStore
    cache: StatusCache
    policy: FetchPolicy
    options: ProcessOptions
    limits: CsvLimits
    api_base_url: str
    webhook_secret: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    event_limits: EventLimits = field(default_factory=EventLimits)

    def publish_status(self, session: Session, request_id: str) -> dict | None:
        req = repo.get_request(session, request_id)
        if req is None:
            return None
        doc = status_document(req, self.api_base_url)
        self.cache.set(request_id, doc)
        return doc

    def stop_if_canceled(self, request_id: str) -> None:
        """Raise RequestCanceled when the request's owner canceled it (each step asks before it works)."""
        with self.sessions() as s:
            if repo.is_canceled(s, request_id):
                raise RequestCanceled(request_id)


def iter_rows(ctx: RequestContext, request_id: str) -> Iterator[ProductRow]:
    """The parsed rows of a request (written by `validate_request`), read lazily in input order."""
    try:
        return open_rows(ctx.store, request_id)
    except RowsMissing as exc:
        raise RequestFailed(f"parsed rows of request {request_id} are missing from storage") from exc
