"""Read-only access to output images (`requests/<id>/images/...`): the default public URL of results.

Request ids are random UUIDs, so an image URL is unguessable; inputs and CSVs are never served here.
"""

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import StoreDep
from api.errors import ApiError
from api.schemas.errors import ErrorResponse
from api.streaming import stream_object
from image_pipeline.domain.keys import IMAGE_CONTENT_TYPES, PUBLIC_IMAGE_KEY

router = APIRouter(tags=["files"])


@router.get(
    "/files/{key:path}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {t: {} for t in IMAGE_CONTENT_TYPES.values()}, "description": "the image"},
        404: {"model": ErrorResponse, "description": "no such image"},
        422: {"model": ErrorResponse, "description": "invalid path"},
    },
)
def get_file(key: str, store: StoreDep) -> StreamingResponse:
    """One output image (any rendition)."""
    if not PUBLIC_IMAGE_KEY.match(key):
        raise ApiError(404, "not found")
    immutable = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
    media_type = IMAGE_CONTENT_TYPES[key.rsplit(".", 1)[1]]
    return stream_object(store, key, media_type, immutable, missing="not found")
