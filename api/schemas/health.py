"""Liveness and readiness answers (`GET /healthz`, `GET /readyz`): what a load balancer or Kubernetes
probe reads. They name dependencies, never hosts, users or driver errors (the routes need no key)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Liveness(BaseModel):
    status: Literal["ok"]

    model_config = {"json_schema_extra": {"examples": [{"status": "ok"}]}}


class DependencyState(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    failed: list[str]
    checks: dict[str, DependencyState]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "status": "ready",
                    "failed": [],
                    "checks": {name: {"status": "ok", "detail": None} for name in ("database", "objects", "redis")},
                },
                {
                    "status": "unavailable",
                    "failed": ["objects"],
                    "checks": {
                        "database": {"status": "ok", "detail": None},
                        "objects": {"status": "unavailable", "detail": "did not answer"},
                        "redis": {"status": "ok", "detail": None},
                    },
                },
            ]
        }
    }
