"""Security headers on every response, and CORS only when `IMGPIPE_CORS_ORIGINS` names origins.

The CSP suits a same-origin page with its own (not inline) scripts and styles, such as the status
page at `/`: scripts, styles and XHR only from this origin, images also from the public base URL of
the results (a CDN). The interactive docs (`/docs`, `/redoc`) load Swagger/ReDoc from their CDN and
run one inline script, so they get a looser policy of their own.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware.paths import route_path
from image_pipeline.domain.settings import Settings

_DOCS_PATHS = ("/docs", "/redoc", "/docs/oauth2-redirect")
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def content_security_policy(settings: Settings) -> str:
    images = ["'self'", "data:"]
    public = _origin(settings.resolved_public_base_url)
    if public and public != _origin(settings.resolved_api_base_url):
        images.append(public)
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {' '.join(images)}; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )


class SecurityHeaders:
    """Pure ASGI middleware (streams untouched) adding the headers unless a route set them itself."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.csp = content_security_policy(settings)
        self.hsts = f"max-age={settings.hsts_seconds}; includeSubDomains" if settings.hsts_seconds else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        csp = _DOCS_CSP if path in _DOCS_PATHS else self.csp
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Content-Security-Policy", csp)
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
                if path.startswith("/api/"):
                    headers.setdefault("Cache-Control", "no-store")  # tenant data: never kept by shared caches
                if https and self.hsts:
                    headers.setdefault("Strict-Transport-Security", self.hsts)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app, settings: Settings) -> None:  # FastAPI
    """Add CORS (only if origins are configured) inside the security headers, which wrap everything."""
    origins = settings.cors_origin_list
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            allow_credentials=False,  # bearer keys, never cookies
            max_age=600,
        )
    app.add_middleware(SecurityHeaders, settings=settings)
