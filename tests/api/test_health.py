import time

from fastapi.testclient import TestClient

from api.main import create_app
from tests.support.servers import free_port


def test_db_connected(client) -> None:
    for path in ("/api/check_db_connection", "/api/check_db_connection/"):
        r = client.get(path)
        assert r.status_code == 200 and r.json() == {"db_status": "connected"}


def test_db_down_is_503_not_500_or_hang(make_settings) -> None:
    """Issue 15 item 8: the answer (no auth) names no driver, host, port or user. Fails before the fix:
    the detail was the driver's exception text (`OperationalError: ... 127.0.0.1 ... port ...`)."""
    port = free_port()
    dead = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/nothing"
    app = create_app(make_settings(database_url=dead), migrate=False)
    with TestClient(app) as c:
        start = time.monotonic()
        r = c.get("/api/check_db_connection")
        assert r.status_code == 503
        assert r.json() == {"db_status": "unavailable", "detail": "the database did not answer"}
        for leak in ("127.0.0.1", str(port), "postgres", "psycopg", "Error", "nothing"):
            assert leak not in r.text, leak
        assert time.monotonic() - start < 30  # bounded, not a hang (generous: not a timing claim)
