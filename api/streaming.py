"""A stored object as a streamed HTTP response (never held whole), or the route's 404 when it is gone."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.responses import StreamingResponse

from api.errors import ApiError
from image_pipeline.domain.objects import ObjectNotFound, ObjectStore


def stream_object(
    store: ObjectStore, key: str, media_type: str, headers: dict[str, str], missing: str
) -> StreamingResponse:
    """Stream `key`; `missing` is the 404's message. The first chunk is read here, so a missing object
    is answered with a 404 before the response starts instead of breaking off a 200."""
    try:
        chunks = store.iter_chunks(key)
        first = next(chunks, b"")
    except ObjectNotFound as exc:
        raise ApiError(404, missing) from exc

    def body() -> Iterator[bytes]:
        yield first
        yield from chunks

    return StreamingResponse(body(), media_type=media_type, headers=headers)
