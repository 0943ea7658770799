"""Health: `/healthz` (liveness: the process answers), `/readyz` (readiness: the database, the object store
and, when configured, Redis answer) and the older `/api/check_db_connection` (database only), kept as it was."""

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.schemas.health import Liveness, Readiness
from api.schemas.requests import DbHealth
from image_pipeline.domain.readiness import ping_database

router = APIRouter(tags=["health"])  # under /api
probes = APIRouter(tags=["health"])  # at the root, where probes and load balancers look
log = logging.getLogger("imgpipe.api.health")
# Threads of its own: the default executor (asyncio.to_thread) is shared with whatever else blocks in
# this process, and a health check must not queue behind it. Four: the three readiness checks run at
# once, and one more for /api/check_db_connection.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="imgpipe-health")


async def _problem(name: str, check: Callable[[], None], timeout: float, refused: str = "did not answer") -> str | None:
    """None when `check` returns within `timeout` s, else what went wrong in words that name no host."""
    try:
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(_POOL, check), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except Exception as exc:  # any client error means unavailable; its text (hosts, users) goes to the log only
        log.warning("%s health check failed: %s: %s", name, type(exc).__name__, exc)
        return refused
    return None


@probes.get("/healthz", response_model=Liveness)
@probes.get("/healthz/", include_in_schema=False)
async def healthz() -> dict:
    """Liveness: 200 while the process serves HTTP. Touches no dependency, so a database outage never gets
    every replica restarted; a process that cannot answer this is the one to restart."""
    return {"status": "ok"}


@probes.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a dependency is unreachable: `failed` names it"}},
)
@probes.get("/readyz/", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 when the database, the object store and (when IMGPIPE_REDIS_URL is set) Redis all answer
    within IMGPIPE_READY_TIMEOUT seconds each, checked at once; else 503 naming each one that did not."""
    timeout = request.app.state.settings.ready_timeout
    checks = request.app.state.readiness_checks
    problems = await asyncio.gather(*(_problem(name, check, timeout) for name, check in checks.items()))
    states = {
        name: {"status": "unavailable" if p else "ok", "detail": p} for name, p in zip(checks, problems, strict=True)
    }
    failed = [name for name, p in zip(checks, problems, strict=True) if p]
    body = {"status": "unavailable" if failed else "ready", "failed": failed, "checks": states}
    return JSONResponse(body, 503 if failed else 200)


@router.get(
    "/check_db_connection",
    response_model=DbHealth,
    responses={503: {"model": DbHealth, "description": "database unreachable"}},
)
@router.get("/check_db_connection/", include_in_schema=False)
async def check_db_connection(request: Request) -> JSONResponse:
    """Database health: 200 connected, or 503 within a few seconds when it is down (never a 500 or a hang)."""
    engine = request.app.state.engine
    timeout = request.app.state.settings.ready_timeout
    problem = await _problem("database", lambda: ping_database(engine), timeout, "the database did not answer")
    if problem:
        return JSONResponse({"db_status": "unavailable", "detail": problem}, 503)
    return JSONResponse({"db_status": "connected"})
