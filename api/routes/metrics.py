"""`GET /metrics`: the Prometheus text exposition of every process on this host (docs/observability.md).

Outside the OpenAPI document: it is for a Prometheus scraper, not an API client. No key: like most
`/metrics` endpoints it is reached from inside the deployment's network, and it carries no tenant,
request id or URL (label values are fixed sets)."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from image_pipeline.domain.telemetry.metrics import exposition

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Counters and histograms of the API and the runs, and gauges read from the app database now."""
    body = await run_in_threadpool(exposition, [request.app.state.db_gauges])  # file and DB reads
    return Response(body, media_type=CONTENT_TYPE_LATEST)
