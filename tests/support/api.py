"""For the tests that talk to the API: the test keys, a good upload, and reads of what it stored."""

from __future__ import annotations

from sqlalchemy import create_engine, func, select

from image_pipeline.domain.db.api_keys import create_key
from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.models import ImageRequest
from tests.support.inputs import csv_bytes

AUTH = {"Authorization": "Bearer test-key-1"}
OTHER = {"Authorization": "Bearer test-key-2"}

GOOD = csv_bytes(
    [
        ("1", "Shoe", ["https://img.example/a.jpg", "https://img.example/b.jpg"]),
        ("2", "Hat", ["https://img.example/c.jpg"]),
    ]
)


def count_requests(settings) -> int:
    engine = create_engine(settings.resolved_database_url)
    with engine.connect() as c:
        n = c.execute(select(func.count()).select_from(ImageRequest)).scalar_one()
    engine.dispose()
    return n


def new_db_key(settings, name: str = "test") -> str:
    """A key created the way `imgpipe keys create` does (hashed in the database); returns the plain key."""
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        _, plain = create_key(s, name)
    engine.dispose()
    return plain
