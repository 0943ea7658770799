"""Every refusal, in one shape (`{detail, errors: [{row, column, message}]}`): the exception routes raise,
the one not-found answer, the handlers that render them, and their OpenAPI documentation."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas.errors import ErrorResponse

# OpenAPI `responses=` of the routes: every refusal has the ErrorResponse shape.
AUTH_ERRORS: dict = {
    401: {"model": ErrorResponse, "description": "missing or invalid bearer API key"},
    422: {"model": ErrorResponse, "description": "invalid parameters: each problem names its field"},
}
NOT_FOUND: dict = {404: {"model": ErrorResponse, "description": "unknown request (or another key's)"}}
OWNED_REQUEST_ERRORS: dict = {**AUTH_ERRORS, **NOT_FOUND}


class ApiError(Exception):
    def __init__(
        self, status_code: int, detail: str, errors: list[dict] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.status_code, self.detail, self.errors, self.headers = status_code, detail, errors or [], headers


def request_not_found(request_id: str) -> ApiError:
    """The answer for a request that does not exist and for another key's request alike (no oracle)."""
    return ApiError(404, f"request {request_id} not found")


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "errors": exc.errors}, exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "errors": []}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "row": 0,
                "column": ".".join(str(p) for p in e.get("loc", ())[1:]) or None,
                "message": e.get("msg", "invalid"),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": "invalid request", "errors": errors}, 422)
