"""OpenAPI additions: the bearer-key security scheme on every route that answers 401 (so /docs has an
Authorize button and generated clients send the key)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

SCHEME = "bearerApiKey"


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer <key>`.",
        }
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                if "401" in op.get("responses", {}):
                    op["security"] = [{SCHEME: []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
