import uuid

import dagster as dg
import pytest

from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.requests import create_request
from image_pipeline.domain.keys import input_key
from image_pipeline.domain.services import make_store


@pytest.fixture
def settings(make_settings, bucket, image_server, webhook_receiver):  # noqa: ANN001, ANN201
    return make_settings(s3_bucket=bucket, fetch_allow=f"{image_server.allow},{webhook_receiver.allow}")


@pytest.fixture
def resources(settings, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
    return build_resources(settings)


@pytest.fixture
def instance():  # noqa: ANN201
    with dg.instance_for_test() as inst:
        yield inst


def submit_to(settings, sessions, csv: bytes, webhook_url: str | None = None, owner: str = "key_test") -> str:  # noqa: ANN001
    """Accept a request the way the API does: store the CSV object, then record the row."""
    from image_pipeline.domain.catalog.csv_input import parse_csv

    parsed = parse_csv(csv)
    rid = str(uuid.uuid4())
    make_store(settings).put(input_key(rid), csv)
    with sessions() as s:
        create_request(
            s,
            request_id=rid,
            owner=owner,
            input_key=input_key(rid),
            webhook_url=webhook_url,
            filename="t.csv",
            row_count=len(parsed.rows),
            url_count=parsed.url_count,
        )
    return rid


@pytest.fixture
def submit(settings):  # noqa: ANN001, ANN201
    """Accept a request the way the API does: store the CSV object, then record the row."""
    engine = make_engine(settings.resolved_database_url)
    sessions = session_factory(engine)

    def _submit(csv: bytes, webhook_url: str | None = None, owner: str = "key_test") -> str:
        return submit_to(settings, sessions, csv, webhook_url, owner)

    yield _submit
    engine.dispose()
