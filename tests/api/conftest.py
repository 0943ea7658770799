from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app

AUTH = {"Authorization": "Bearer test-key-1"}
OTHER = {"Authorization": "Bearer test-key-2"}


@pytest.fixture
def settings(make_settings, bucket, image_server, webhook_receiver):  # noqa: ANN001, ANN201
    return make_settings(s3_bucket=bucket, fetch_allow=f"{image_server.allow},{webhook_receiver.allow}")


@pytest.fixture
def client(settings) -> Iterator[TestClient]:  # noqa: ANN001
    with TestClient(create_app(settings)) as c:
        yield c
