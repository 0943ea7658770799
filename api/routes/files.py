"""Read-only access to output images (`requests/<id>/images/...`): the default public URL of results.

Request ids are random UUIDs, so an image URL is unguessable; inputs and CSVs are never served here.
"""

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import StoreDep
from api.errors import ApiError
from api.schemas.errors import ErrorResponse
from api.streaming import stream_object
from image_pipeline.domain.keys import PUBLIC_IMAGE_KEY

router = APIRouter(tags=["files"])


@router.get(
    "/files/{key:path}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the JPEG"},
        404: {"model": ErrorResponse, "description": "no such image"},
        422: {"model": ErrorResponse, "description": "invalid path"},
    },
)
def get_file(key: str, store: StoreDep) -> StreamingResponse:
    """One recompressed image."""
    if not PUBLIC_IMAGE_KEY.match(key):
        raise ApiError(404, "not found")
    immutable = {"Cache-Control": "public, max-age=31536000, immutable"}
    return stream_object(store, key, "image/jpeg", immutable, missing="not found")
