"""`GET /`: the web page. Server-rendered shell (Jinja2) + one small vendored script; no build step, no CDN."""

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.deps import SettingsDep
from image_pipeline.domain.status import FINAL_STATUSES

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=HERE / "templates")
static_files = StaticFiles(directory=HERE / "static")
router = APIRouter(include_in_schema=False)

# The page loads only its own script and styles; thumbnails may come from any image host.
CSP = (
    "default-src 'self'; img-src 'self' http: https: data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, settings: SettingsDep) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        "index.html",
        {
            "max_upload_mb": settings.max_upload_bytes / 1024 / 1024,
            "max_rows": settings.max_rows,
            "final_statuses": ",".join(FINAL_STATUSES),
        },
    )
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
