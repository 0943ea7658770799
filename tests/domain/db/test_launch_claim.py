"""The launch claim: of any number of concurrent claimers (API fast path, upload sensor), one wins."""

import threading

import pytest

from image_pipeline.domain.db.engine import make_engine, session_factory, upgrade
from image_pipeline.domain.db.requests import claim_launches, mark_processing, release_launch
from tests.support.inputs import csv_bytes
from tests.support.pipeline import submit_to


@pytest.fixture(params=["postgres", "sqlite"])
def db_settings(request, settings, tmp_path):
    if request.param == "postgres":
        return settings
    s = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'claim.db'}"})
    upgrade(s.resolved_database_url)
    return s


def test_concurrent_claims_have_one_winner(db_settings) -> None:
    engine = make_engine(db_settings.resolved_database_url)
    sessions = session_factory(engine)
    try:
        for _ in range(5):
            rid = submit_to(db_settings, sessions, csv_bytes([("1", "A", ["https://x.example/a.jpg"])]))
            barrier = threading.Barrier(8)
            wins: list[str] = []

            def claimer(rid: str, barrier: threading.Barrier, wins: list[str]) -> None:
                with sessions() as s:
                    barrier.wait()
                    wins.extend(claim_launches(s, [rid], 60))

            threads = [threading.Thread(target=claimer, args=(rid, barrier, wins)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert wins == [rid]
    finally:
        engine.dispose()


def test_release_stale_and_started_requests(db_settings) -> None:
    engine = make_engine(db_settings.resolved_database_url)
    sessions = session_factory(engine)
    try:
        rid = submit_to(db_settings, sessions, csv_bytes([("1", "A", ["https://x.example/a.jpg"])]))
        with sessions() as s:
            assert claim_launches(s, [rid], 60) == [rid]
            assert claim_launches(s, [rid], 60) == []  # fresh claim held
            release_launch(s, rid)  # the launch failed: give it back
            assert claim_launches(s, [rid], 60) == [rid]
            assert claim_launches(s, [rid], 0.000001) == [rid]  # stale: re-offered
            mark_processing(s, rid, row_count=1, url_count=1)  # the run started: nobody launches it again
            assert claim_launches(s, [rid], 0.000001) == []
    finally:
        engine.dispose()
