"""Retention: delete requests (objects, rows, cache entries) older than a cut-off, then the sync
memory's outputs that no request left points at. Plain Python."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from image_pipeline.domain.db import sync_memory
from image_pipeline.domain.db.maintenance import delete_requests, expired_requests
from image_pipeline.domain.keys import request_prefix
from image_pipeline.domain.request.context import RequestContext


@dataclass
class PurgeSummary:
    requests: int = 0
    objects: int = 0
    request_ids: list[str] = field(default_factory=list)
    memory_outputs: int = 0  # sync memory rows deleted (their objects are counted in `objects`)

    def as_dict(self) -> dict:
        return asdict(self)


def purge_expired(ctx: RequestContext, before: datetime, batch: int = 500) -> PurgeSummary:
    """Delete every request created before `before` (finished, or stuck since then), batch by batch,
    then the shared outputs that only those requests pointed at (`purge_unreferenced_outputs`).

    Objects go first, rows last: a crash in between leaves rows that the next run purges again.
    """
    summary = PurgeSummary()
    while True:
        with ctx.sessions() as s:
            ids = [r.id for r in expired_requests(s, before, batch)]
        if not ids:
            break
        for rid in ids:
            summary.objects += ctx.store.delete_prefix(request_prefix(rid))
            ctx.cache.forget(rid)
        with ctx.sessions() as s:
            summary.requests += delete_requests(s, ids)
        summary.request_ids += ids
    purge_unreferenced_outputs(ctx, before, summary, batch)
    return summary


def purge_unreferenced_outputs(ctx: RequestContext, before: datetime, summary: PurgeSummary, batch: int = 500) -> None:
    """The sync memory's content-addressed outputs are shared by every request of a tenant that made or
    reused them, so purging a request never deletes them. They go here, and only when unused since
    `before` AND no request left (of the same tenant) has a result from the same source content: an
    output a newer request still points at is never deleted.

    Rows go first (a conditional DELETE: a run that claimed one meanwhile keeps it), objects after, and
    an object a remaining row of the same content still names (a rendition two profile versions share)
    stays. A crash between the two leaves orphan objects, never a row without its object."""
    while True:
        with ctx.sessions() as s:
            rows = sync_memory.unreferenced_outputs(s, before, batch)
            if not rows:
                break
            gone = sync_memory.delete_outputs(s, rows, before)
            summary.memory_outputs += len(gone)
            for g in gone:
                kept = sync_memory.keys_in_use(s, g["owner"], g["content_hash"])
                for key in sync_memory.output_keys(g["outputs"]):
                    if key not in kept:
                        ctx.store.delete(key)
                        summary.objects += 1
        if len(rows) < batch:
            break
    with ctx.sessions() as s:
        sync_memory.forget_sources_before(s, before)
