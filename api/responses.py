"""Documented error answers shared by routes (OpenAPI `responses=`): every refusal has the ErrorResponse shape."""

from api.schemas import ErrorResponse

AUTH_ERRORS: dict = {
    401: {"model": ErrorResponse, "description": "missing or invalid bearer API key"},
    422: {"model": ErrorResponse, "description": "invalid parameters: each problem names its field"},
}
NOT_FOUND: dict = {404: {"model": ErrorResponse, "description": "unknown request (or another key's)"}}
