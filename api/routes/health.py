import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.schemas.requests import DbHealth

router = APIRouter(tags=["health"])
DB_CHECK_TIMEOUT_S = 3.0
log = logging.getLogger("imgpipe.api.health")
# Threads of its own: the default executor (asyncio.to_thread) is shared with whatever else blocks in
# this process, and a health check must not queue behind it.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="imgpipe-health")


def _ping(request: Request) -> None:
    with request.app.state.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@router.get(
    "/check_db_connection",
    response_model=DbHealth,
    responses={503: {"model": DbHealth, "description": "database unreachable"}},
)
@router.get("/check_db_connection/", include_in_schema=False)
async def check_db_connection(request: Request) -> JSONResponse:
    """Database health: 200 connected, or 503 within a few seconds when it is down (never a 500 or a hang)."""
    try:
        ping = asyncio.get_running_loop().run_in_executor(_POOL, _ping, request)
        await asyncio.wait_for(ping, DB_CHECK_TIMEOUT_S)
    except TimeoutError:
        return JSONResponse({"db_status": "unavailable", "detail": f"no answer within {DB_CHECK_TIMEOUT_S:g} s"}, 503)
    except Exception as exc:  # any driver error means unavailable; its text (hosts, users) goes to the log only
        log.warning("database health check failed: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"db_status": "unavailable", "detail": "the database did not answer"}, 503)
    return JSONResponse({"db_status": "connected"})
