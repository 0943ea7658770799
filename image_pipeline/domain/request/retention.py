"""Retention: delete requests (objects, rows, cache entries) older than a cut-off. Plain Python."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from image_pipeline.domain.db.maintenance import delete_requests, expired_requests
from image_pipeline.domain.keys import request_prefix
from image_pipeline.domain.request.context import RequestContext


@dataclass
class PurgeSummary:
    requests: int = 0
    objects: int = 0
    request_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def purge_expired(ctx: RequestContext, before: datetime, batch: int = 500) -> PurgeSummary:
    """Delete every request created before `before` (finished, or stuck since then), batch by batch.

    Objects go first, rows last: a crash in between leaves rows that the next run purges again.
    """
    summary = PurgeSummary()
    while True:
        with ctx.sessions() as s:
            ids = [r.id for r in expired_requests(s, before, batch)]
        if not ids:
            return summary
        for rid in ids:
            summary.objects += ctx.store.delete_prefix(request_prefix(rid))
            ctx.cache.forget(rid)
        with ctx.sessions() as s:
            summary.requests += delete_requests(s, ids)
        summary.request_ids += ids
