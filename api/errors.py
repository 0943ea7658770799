"""One error shape for every refusal: `{detail, errors: [{row, column, message}]}`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(
        self, status_code: int, detail: str, errors: list[dict] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.status_code, self.detail, self.errors, self.headers = status_code, detail, errors or [], headers


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
