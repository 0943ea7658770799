"""Incremental catalogue sync: one chunk's view of the tenant's memory (docs/sync.md).

Before a chunk runs, the memory of its URLs is read in a few queries: what each URL gave last time
(validators, sha256 of the bytes) and the outputs made from those bytes under this request's rendition
settings. A URL whose outputs are there is fetched conditionally (`If-None-Match` / `If-Modified-Since`);
a 304, or a 200 whose bytes hash the same, reuses those outputs: no decode, no encode, no write.

Outputs are content-addressed per tenant (`keys.content_key`): the same bytes under the same rendition
settings have the same key in every request, so an unchanged image keeps its URL, a changed one gets a
new URL, and the same bytes at two URLs are one output.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from image_pipeline.domain.db import sync_memory as db
from image_pipeline.domain.db.requests import UrlResult
from image_pipeline.domain.images.renditions import Rendition
from image_pipeline.domain.keys import SETTINGS_HASH_CHARS, content_key

NEW, CHANGED, UNCHANGED = "new", "changed", "unchanged"
# How a URL's outputs came to be: made now; reused after a 304; reused after a 200 with the same bytes
# (the origin sent no validators, or bytes another URL gave); the same, though validators were sent
# and the origin answered 200 anyway (it ignores them); the result of the same URL earlier in the chunk.
ENCODED, NOT_MODIFIED, SAME_BYTES, VALIDATORS_IGNORED, DUPLICATE = (
    "encoded", "not_modified", "same_bytes", "validators_ignored", "duplicate",
)  # fmt: skip
VIA = (ENCODED, NOT_MODIFIED, SAME_BYTES, VALIDATORS_IGNORED, DUPLICATE)
# Part of every settings hash: raise it when the codec makes different bytes from the same settings,
# so that every tenant's outputs are made again once instead of being reused.
OUTPUT_VERSION = 1


def content_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _digest(value: object) -> str:
    text = json.dumps({"v": OUTPUT_VERSION, "settings": value}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def rendition_hashes(renditions: tuple[Rendition, ...], quality: int, max_dimension: int | None) -> list[str]:
    """One hash per output of a URL: each rendition's settings, or the seed JPEG's (quality, size cap).

    The name is left out: two renditions alike but for their name are one object."""
    if not renditions:
        return [_digest({"seed_jpeg": {"quality": quality, "max_dimension": max_dimension}})[:SETTINGS_HASH_CHARS]]
    return [_digest({k: v for k, v in r.as_dict().items() if k != "name"})[:SETTINGS_HASH_CHARS] for r in renditions]


def settings_hash(renditions: tuple[Rendition, ...], quality: int, max_dimension: int | None) -> str:
    """The profile's version: what a URL's set of outputs was made with (names and order included, as
    the results record the renditions by name)."""
    names = [r.name for r in renditions]
    return _digest({"outputs": rendition_hashes(renditions, quality, max_dimension), "names": names})


@dataclass
class SyncMemory:
    """One chunk's view of the memory of `owner`; `force` (the request's) asks and trusts none of it."""

    owner: str
    settings_hash: str
    output_hashes: list[str]  # per output of a URL, in order: its settings' part of the object key
    force: bool = False
    sessions: sessionmaker[Session] | None = None  # for bytes found at a URL not seen before
    sources: dict[str, db.KnownSource] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    # Within the chunk: the first fetch of each URL, the first encode of each content (see worker).
    url_results: dict[str, asyncio.Future] = field(default_factory=dict)
    encodes: dict[str, asyncio.Future] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        sessions: sessionmaker[Session],
        owner: str,
        urls: Iterable[str],
        renditions: tuple[Rendition, ...],
        quality: int,
        max_dimension: int | None,
        force: bool = False,
    ) -> SyncMemory:
        memory = cls(
            owner,
            settings_hash(renditions, quality, max_dimension),
            rendition_hashes(renditions, quality, max_dimension),
            force=force,
            sessions=sessions,
        )
        with sessions() as s:
            memory.sources = db.known_sources(s, owner, urls)  # forced too: new/changed/unchanged still told
            if not force:
                wanted = {k.content_hash for k in memory.sources.values()}
                memory.outputs = db.claim_outputs(s, owner, memory.settings_hash, wanted)
        return memory

    def validators(self, url: str) -> dict[str, str]:
        """The conditional headers for `url`: only when its last bytes' outputs can be reused (a 304
        without them would leave nothing to make the outputs from)."""
        known = self.sources.get(url)
        if self.force or known is None or known.content_hash not in self.outputs:
            return {}
        headers = {}
        if known.etag:
            headers["If-None-Match"] = known.etag
        if known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        return headers

    def status_of(self, url: str, digest: str) -> str:
        known = self.sources.get(url)
        return NEW if known is None else UNCHANGED if known.content_hash == digest else CHANGED

    async def reusable(self, digest: str, io_pool: Executor) -> dict | None:
        """The outputs already made from these bytes under these settings, or None (also when forced)."""
        if self.force:
            return None
        if digest not in self.outputs and self.sessions is not None:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(io_pool, self._claim_one, digest)
            if found is not None:
                self.outputs[digest] = found
        return self.outputs.get(digest)

    def _claim_one(self, digest: str) -> dict | None:
        """A read first: most new bytes are new to the tenant, and a read costs no commit."""
        assert self.sessions is not None
        with self.sessions() as s:
            if not db.has_outputs(s, self.owner, self.settings_hash, digest):
                return None
            return db.claim_outputs(s, self.owner, self.settings_hash, [digest]).get(digest)

    def key(self, digest: str, n: int, ext: str) -> str:
        return content_key(self.owner, digest, self.output_hashes[n], ext)


def reused(
    url: str, idx: int, row: int, outputs: dict, digest: str, status: str, via: str, bytes_in: int, etag, last_modified
) -> UrlResult:
    """A result whose outputs were made before (by this tenant, from these bytes, under these settings)."""
    return UrlResult(
        idx,
        row,
        url,
        "done",
        bytes_in=bytes_in,
        bytes_out=outputs["bytes_out"],
        width=outputs["width"],
        height=outputs["height"],
        output_key=outputs["output_key"],
        kept_original=outputs["kept_original"],
        renditions=outputs["renditions"],
        score=outputs.get("score"),
        sync_status=status,
        sync_via=via,
        content_hash=digest,
        etag=etag,
        last_modified=last_modified,
    )
