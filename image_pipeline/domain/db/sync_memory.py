"""The sync memory in the app database (docs/sync.md): per tenant, what each source URL last gave and
the outputs made from each source content under each set of rendition settings. Plain functions over a
SQLAlchemy Session; `images.sync` is what the pipeline works with."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from image_pipeline.domain.clock import utcnow
from image_pipeline.domain.db.models import ImageRequest, ImageResult, SyncOutput, SyncSource
from image_pipeline.domain.db.requests import UrlResult

# Rows per IN (...) list: far below SQLite's and PostgreSQL's parameter limits.
_BATCH = 500


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(frozen=True)
class KnownSource:
    """What the tenant last fetched from a URL."""

    etag: str | None
    last_modified: str | None
    content_hash: str
    bytes: int


def _batches(items: Sequence[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), _BATCH):
        yield list(items[i : i + _BATCH])


def known_sources(session: Session, owner: str, urls: Iterable[str]) -> dict[str, KnownSource]:
    """url -> what `owner` last fetched from it, for the URLs it has fetched before."""
    by_hash = {url_hash(u): u for u in urls}
    found: dict[str, KnownSource] = {}
    for batch in _batches(list(by_hash)):
        q = select(SyncSource).where(SyncSource.owner == owner, SyncSource.url_hash.in_(batch))
        for row in session.scalars(q):
            found[by_hash[row.url_hash]] = KnownSource(row.etag, row.last_modified, row.content_hash, row.bytes)
    return found


def claim_outputs(session: Session, owner: str, settings_hash: str, content_hashes: Iterable[str]) -> dict[str, dict]:
    """content hash -> the outputs `owner` made from it under `settings_hash`, for those it has; each one
    returned is marked used now, in the same UPDATE, so retention (which only deletes rows unused since
    its cut-off) cannot take outputs a run has just decided to reuse."""
    wanted = sorted(set(content_hashes))
    found: dict[str, dict] = {}
    now = utcnow()
    for batch in _batches(wanted):
        res = session.execute(
            update(SyncOutput)
            .where(
                SyncOutput.owner == owner,
                SyncOutput.settings_hash == settings_hash,
                SyncOutput.content_hash.in_(batch),
            )
            .values(last_used_at=now)
            .returning(SyncOutput.content_hash, SyncOutput.outputs)
            .execution_options(synchronize_session=False)
        )
        found.update({h: json.loads(text) for h, text in res})
    session.commit()
    return found


def has_outputs(session: Session, owner: str, settings_hash: str, content_hash: str) -> bool:
    q = select(SyncOutput.content_hash).where(
        SyncOutput.owner == owner, SyncOutput.settings_hash == settings_hash, SyncOutput.content_hash == content_hash
    )
    return session.execute(q).first() is not None


def outputs_of(r: UrlResult) -> dict:
    """What a later request needs to reuse a done result's outputs."""
    return {
        "output_key": r.output_key,
        "width": r.width,
        "height": r.height,
        "bytes_out": r.bytes_out,
        "kept_original": r.kept_original,
        "renditions": r.renditions,
        "score": r.score,
    }


def remember(session: Session, owner: str, settings_hash: str, results: Iterable[UrlResult]) -> None:
    """Record what the done results of a batch fetched (validators, content hash) and made (outputs)."""
    now = utcnow()
    sources: dict[str, dict] = {}
    outputs: dict[str, dict] = {}
    for r in results:
        if r.status != "done" or not r.content_hash:
            continue
        sources[url_hash(r.url)] = {
            "owner": owner, "url_hash": url_hash(r.url), "url": r.url, "etag": r.etag,
            "last_modified": r.last_modified, "content_hash": r.content_hash, "bytes": r.bytes_in or 0, "seen_at": now,
        }  # fmt: skip
        outputs[r.content_hash] = {
            "owner": owner, "content_hash": r.content_hash, "settings_hash": settings_hash,
            "outputs": json.dumps(outputs_of(r), separators=(",", ":")), "created_at": now, "last_used_at": now,
        }  # fmt: skip
    if not sources:
        return
    dialect = session.get_bind().dialect.name
    session.execute(_upsert(dialect, SyncSource, ("owner", "url_hash")), list(sources.values()))
    session.execute(_upsert(dialect, SyncOutput, ("owner", "content_hash", "settings_hash")), list(outputs.values()))
    session.commit()


@functools.cache
def _upsert(dialect: str, model: type, key: tuple[str, ...]):  # an Insert construct, built once per table
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(model)
    kept = {"created_at"}  # an output's first making stays its creation
    cols = {c.name: stmt.excluded[c.name] for c in model.__table__.columns if c.name not in (*key, *kept)}
    return stmt.on_conflict_do_update(index_elements=list(key), set_=cols)


def unreferenced_outputs(session: Session, before: datetime, limit: int = 500) -> list[SyncOutput]:
    """Outputs unused since `before` whose content no request left (of the same tenant) points at."""
    referenced = exists().where(
        ImageResult.content_hash == SyncOutput.content_hash,
        ImageResult.request_id == ImageRequest.id,
        ImageRequest.owner == SyncOutput.owner,
    )
    q = select(SyncOutput).where(SyncOutput.last_used_at < before, ~referenced).limit(limit)
    return list(session.scalars(q))


def delete_outputs(session: Session, rows: Sequence[SyncOutput], before: datetime) -> list[dict]:
    """Delete these memory rows if still unused since `before` (a run may have claimed one meanwhile);
    returns the outputs of those deleted, and forgets the sources that pointed at their content."""
    gone: list[dict] = []
    for row in rows:
        res = session.execute(
            delete(SyncOutput)
            .where(
                SyncOutput.owner == row.owner,
                SyncOutput.content_hash == row.content_hash,
                SyncOutput.settings_hash == row.settings_hash,
                SyncOutput.last_used_at < before,
            )
            .returning(SyncOutput.outputs)
        )
        for (text,) in res:
            gone.append({"owner": row.owner, "content_hash": row.content_hash, "outputs": json.loads(text)})
    session.commit()
    return gone


def keys_in_use(session: Session, owner: str, content_hash: str) -> set[str]:
    """Every object key the tenant's remaining memory rows of one content still name (a rendition whose
    settings two profile versions share has one key for both)."""
    q = select(SyncOutput.outputs).where(SyncOutput.owner == owner, SyncOutput.content_hash == content_hash)
    return {k for (text,) in session.execute(q) for k in output_keys(json.loads(text))}


def output_keys(outputs: dict) -> list[str]:
    if outputs.get("renditions"):
        return [m["key"] for m in outputs["renditions"]]
    return [outputs["output_key"]] if outputs.get("output_key") else []


def forget_sources_before(session: Session, before: datetime) -> int:
    """Source rows not seen since `before` (their next fetch is then a plain one)."""
    n = session.execute(delete(SyncSource).where(SyncSource.seen_at < before)).rowcount
    session.commit()
    return n
