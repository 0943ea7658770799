"""Incremental catalogue sync through the domain flow (accept -> validate -> compress -> output), on the
real PostgreSQL and a local object directory, against loopback origins that honour validators (ETag,
Last-Modified, 304), send none, or ignore them."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from image_pipeline.domain.clock import utcnow
from image_pipeline.domain.db.models import ImageRequest, SyncOutput
from image_pipeline.domain.db.requests import get_request, iter_result_facts
from image_pipeline.domain.keys import manifest_key, tenant_segment
from image_pipeline.domain.profiles import resolve
from image_pipeline.domain.request import checks as verify
from image_pipeline.domain.request.accept import Upload, accept, new_request_id
from image_pipeline.domain.request.chunks import compress_request
from image_pipeline.domain.request.finish import write_output
from image_pipeline.domain.request.retention import purge_expired
from image_pipeline.domain.request.validate import validate_request
from image_pipeline.domain.services import build_context
from image_pipeline.domain.settings import Settings
from image_pipeline.domain.webhooks.outbox import final_event
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import results_for
from tests.support.servers import ImageServer
from tests.support.services import WEBHOOK_SECRET


@pytest.fixture
def origin():
    """An origin that honours validators (tests switch `validators` to "none" or "ignore")."""
    srv = ImageServer(validators="honour").start()
    yield srv
    srv.close()


@pytest.fixture
def tenants() -> tuple[str, str]:
    """Two tenants of their own (the session's database is shared by every test)."""
    return f"key_a{uuid.uuid4().hex[:20]}", f"key_b{uuid.uuid4().hex[:20]}"


@pytest.fixture
def ctx(pg_url, origin, tmp_path):
    """The real PostgreSQL; objects in a local directory (the embedded default), no S3 server needed."""
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", database_url=pg_url, fetch_allow=origin.allow,
        api_base_url="http://testserver", webhook_secret=WEBHOOK_SECRET,
    )  # fmt: skip
    assert settings.sync_memory  # the product's default
    return build_context(settings)


def serve(origin: ImageServer, n: int, prefix: str = "p") -> list[str]:
    return [origin.add(f"/{prefix}/{i}.jpg", make_image("JPEG", (96 + i, 64), seed=i)) for i in range(n)]


def run(ctx, rows, owner: str, profile=None, force: bool = False) -> str:
    """One request through the domain steps the assets call, in order."""
    data = csv_bytes(rows)
    urls = sum(len(r[2]) for r in rows)
    rid = new_request_id()
    frozen = profile.canonical_json() if profile is not None else None
    with ctx.sessions() as s:
        accept(ctx.store, s, rid, Upload(owner, data, len(rows), urls, profile=frozen, force=force))
    validate_request(ctx, rid)
    compress_request(ctx, rid)
    write_output(ctx, rid)
    return rid


def results(ctx, rid: str):
    with ctx.sessions() as s:
        return results_for(s, rid)


def output_table(ctx, rid: str) -> list[list[str]]:
    with ctx.sessions() as s:
        key = get_request(s, rid).output_csv_key
    return list(csv.reader(io.StringIO(ctx.store.get(key).decode())))


def inode(ctx, key: str) -> int:
    """The stored file's inode: the local store writes a temp file and renames it, so any write changes it."""
    return os.stat(Path(ctx.store.root) / key).st_ino


def one_per_row(urls: list[str]) -> list[tuple[str, str, list[str]]]:
    return [(str(i + 1), f"P{i}", [u]) for i, u in enumerate(urls)]


def test_unchanged_catalogue_is_answered_304_and_keeps_every_output_url(ctx, origin, tenants) -> None:
    a, b = tenants
    urls = serve(origin, 6)
    first = run(ctx, one_per_row(urls), a)
    before = results(ctx, first)
    assert [(r.sync_status, r.sync_via) for r in before] == [("new", "encoded")] * 6
    assert all(r.output_key.startswith(f"outputs/{tenant_segment(a)}/{r.content_hash}/") for r in before)
    assert all(r.etag and r.last_modified for r in before)
    written = {r.output_key: inode(ctx, r.output_key) for r in before}
    bodies = len(origin.bodies)

    second = run(ctx, one_per_row(urls), a)
    after = results(ctx, second)
    assert [(r.sync_status, r.sync_via) for r in after] == [("unchanged", "not_modified")] * 6
    assert len(origin.bodies) == bodies  # no body downloaded again
    assert sorted(set(origin.conditional)) == sorted(f"/p/{i}.jpg" for i in range(6))
    assert [r.output_key for r in after] == [r.output_key for r in before]  # the same URLs
    assert {k: inode(ctx, k) for k in written} == written  # nothing written again
    assert [r.bytes_in for r in after] == [r.bytes_in for r in before]

    table = output_table(ctx, second)
    assert table[0][-1] == "Sync Status" and [row[-1] for row in table[1:]] == ["unchanged"] * 6
    assert [row[3] for row in table[1:]] == [ctx.store.public_url(r.output_key) for r in before]
    manifest = json.loads(ctx.store.get(manifest_key(second)))
    assert [(u["sync_status"], u["sync_via"]) for u in manifest["urls"]] == [("unchanged", "not_modified")] * 6
    with ctx.sessions() as s:
        event = final_event(s, ctx.store, get_request(s, second), "http://api")
    assert event["data"]["counts"]["sync"] == {"new": 0, "changed": 0, "unchanged": 6}
    assert [p["sync_status"] for p in event["data"]["products"]] == [["unchanged"]] * 6


def test_origin_without_validators_reuses_outputs_by_content_hash(ctx, origin, tenants) -> None:
    a, b = tenants
    origin.validators = "none"
    urls = serve(origin, 4)
    before = results(ctx, run(ctx, one_per_row(urls), a))
    assert all(r.etag is None and r.last_modified is None for r in before)
    written = {r.output_key: inode(ctx, r.output_key) for r in before}

    bodies = len(origin.bodies)
    after = results(ctx, run(ctx, one_per_row(urls), a))
    assert len(origin.bodies) == bodies + 4 and not origin.conditional  # nothing to ask with: bodies again
    assert [(r.sync_status, r.sync_via) for r in after] == [("unchanged", "same_bytes")] * 4
    assert [r.output_key for r in after] == [r.output_key for r in before]
    assert {k: inode(ctx, k) for k in written} == written  # the same bytes: no encode, no write


def test_a_changed_image_gets_a_new_output_and_the_others_keep_theirs(ctx, origin, tenants) -> None:
    a, b = tenants
    urls = serve(origin, 5)
    before = results(ctx, run(ctx, one_per_row(urls), a))
    origin.add("/p/2.jpg", make_image("JPEG", (150, 90), seed=99))  # the origin's image changes (new ETag)

    rid = run(ctx, one_per_row(urls), a)
    after = results(ctx, rid)
    assert [r.sync_status for r in after] == ["unchanged", "unchanged", "changed", "unchanged", "unchanged"]
    assert [r.sync_via for r in after] == ["not_modified"] * 2 + ["encoded"] + ["not_modified"] * 2
    assert after[2].output_key != before[2].output_key and (after[2].width, after[2].height) == (150, 90)
    assert [a.output_key for a in after if a.idx != 2] == [b.output_key for b in before if b.idx != 2]
    assert ctx.store.exists(before[2].output_key)  # the first request's output is still what it was
    assert [row[-1] for row in output_table(ctx, rid)[1:]] == [r.sync_status for r in after]


def test_a_profile_change_makes_new_outputs(ctx, origin, tenants) -> None:
    a, b = tenants
    urls = serve(origin, 3)
    v1 = resolve("web", None, tenant_profiles={}, seed_quality=50, max_dimension=None)
    before = results(ctx, run(ctx, one_per_row(urls), a, profile=v1))
    # The same profile with its `thumb` at another quality: a new version of the profile.
    v2 = resolve(
        "web", json.dumps({"renditions": [{"name": "thumb", "quality": 55}]}), tenant_profiles={}, seed_quality=50,
        max_dimension=None,
    )  # fmt: skip
    bodies = len(origin.bodies)

    after = results(ctx, run(ctx, one_per_row(urls), a, profile=v2))
    assert [(r.sync_status, r.sync_via) for r in after] == [("unchanged", "encoded")] * 3
    assert len(origin.bodies) == bodies + 3  # fetched whole: a 304 would leave nothing to encode from
    for was, now in zip(before, after, strict=True):
        old = {m["name"]: m["key"] for m in json.loads(was.renditions)}
        new = {m["name"]: m["key"] for m in json.loads(now.renditions)}
        assert new["thumb"] != old["thumb"] and ctx.store.exists(new["thumb"])
        assert new["large"] == old["large"]  # its settings did not change: the same object, the same URL

    again = results(ctx, run(ctx, one_per_row(urls), a, profile=v2))  # v2 once more: reused
    assert [r.sync_via for r in again] == ["not_modified"] * 3


def test_force_fetches_and_encodes_everything_again(ctx, origin, tenants) -> None:
    a, b = tenants
    urls = serve(origin, 3)
    before = results(ctx, run(ctx, one_per_row(urls), a))
    written = {r.output_key: inode(ctx, r.output_key) for r in before}
    bodies = len(origin.bodies)

    forced = run(ctx, one_per_row(urls), a, force=True)
    with ctx.sessions() as s:
        assert get_request(s, forced).force is True
    after = results(ctx, forced)
    assert not origin.conditional and len(origin.bodies) == bodies + 3  # plain fetches, whole bodies
    assert [(r.sync_status, r.sync_via) for r in after] == [("unchanged", "encoded")] * 3
    assert [r.output_key for r in after] == [r.output_key for r in before]  # content-addressed: same key
    assert all(inode(ctx, k) != i for k, i in written.items())  # but written again


def test_duplicates_inside_one_request_are_fetched_and_encoded_once(ctx, origin, tenants) -> None:
    a, b = tenants
    same = make_image("JPEG", (120, 80), seed=7)
    ua, ub = origin.add("/d/a.jpg", same), origin.add("/d/b.jpg", same)  # the same bytes at two URLs
    uc = origin.add("/d/c.jpg", make_image("JPEG", (100, 70), seed=8))
    rows = [("1", "A", [uc, ua]), ("2", "B", [uc]), ("3", "C", [uc, ub]), ("4", "D", [ua])]
    rid = run(ctx, rows, a)
    got = results(ctx, rid)
    assert origin.hits.count("/d/c.jpg") == 1 and origin.hits.count("/d/a.jpg") == 1
    assert origin.hits.count("/d/b.jpg") == 1  # another URL must be fetched; its bytes are not encoded again
    assert [got[i].sync_via for i in (0, 2, 3, 5)] == ["encoded", "duplicate", "duplicate", "duplicate"]
    # a and b race: whichever body arrives first is encoded, the other waits for it and shares its outputs
    assert {got[1].sync_via, got[4].sync_via} == {"encoded", "same_bytes"}
    assert got[1].output_key == got[4].output_key == got[5].output_key  # a, b, a: one output
    assert got[0].output_key == got[2].output_key == got[3].output_key
    assert all(r.sync_status == "new" for r in got)
    assert len({r.output_key for r in got}) == 2


def test_tenant_b_never_reuses_what_tenant_a_made(ctx, origin, tenants) -> None:
    a, b = tenants
    urls = serve(origin, 3)
    of_a = results(ctx, run(ctx, one_per_row(urls), a))
    of_b = results(ctx, run(ctx, one_per_row(urls), b))
    assert not origin.conditional  # B knows nothing of these URLs: no validators of A's sent
    assert [(r.sync_status, r.sync_via) for r in of_b] == [("new", "encoded")] * 3
    assert [r.content_hash for r in of_b] == [r.content_hash for r in of_a]
    assert all(r.output_key.startswith(f"outputs/{tenant_segment(b)}/") for r in of_b)
    assert not {r.output_key for r in of_a} & {r.output_key for r in of_b}
    with ctx.sessions() as s:
        owners = {row.owner for row in s.scalars(select(SyncOutput).where(SyncOutput.owner.in_([a, b])))}
    assert owners == {a, b}


def test_an_origin_ignoring_validators_is_reported(ctx, origin, tenants) -> None:
    a, b = tenants
    origin.validators = "ignore"  # a new ETag on every answer, never a 304
    urls = serve(origin, 3)
    run(ctx, one_per_row(urls), a)
    rid = run(ctx, one_per_row(urls), a)
    got = results(ctx, rid)
    assert len(origin.conditional) == 3
    assert [(r.sync_status, r.sync_via) for r in got] == [("unchanged", "validators_ignored")] * 3
    with ctx.sessions() as s:
        found = verify.scan(iter_result_facts(s, rid), 3, 3, 0)
    assert not found.validators.ok and [i for i, _ in found.validators.ignored] == [0, 1, 2]
    assert found.validators.hosts() == {origin.allow: 3}


def test_retention_keeps_outputs_a_newer_request_still_points_at(ctx, origin, tenants) -> None:
    a, b = tenants
    urls = serve(origin, 3)
    old = run(ctx, one_per_row(urls), a)
    origin.add("/p/0.jpg", make_image("JPEG", (140, 90), seed=50))  # URL 0 changes between the two
    new = run(ctx, one_per_row(urls), a)
    first, second = results(ctx, old), results(ctx, new)
    assert [r.sync_status for r in second] == ["changed", "unchanged", "unchanged"]
    month_ago = utcnow() - timedelta(days=30)
    with ctx.sessions() as s:  # the old request is a month old, and so is every use of the memory
        s.execute(update(ImageRequest).where(ImageRequest.id == old).values(created_at=month_ago))
        s.execute(update(SyncOutput).where(SyncOutput.owner == a).values(last_used_at=month_ago))
        s.commit()

    summary = purge_expired(ctx, utcnow() - timedelta(days=7))
    assert old in summary.request_ids and new not in summary.request_ids
    assert all(ctx.store.exists(r.output_key) for r in second)  # shared with the newer request: kept
    assert not ctx.store.exists(first[0].output_key)  # URL 0's old bytes: nothing points at them any more
    assert summary.memory_outputs == 1

    again = results(ctx, run(ctx, one_per_row(urls), a))  # the memory of what is kept still serves
    assert [r.sync_via for r in again] == ["not_modified"] * 3
