"""Upload body limit enforced while the body streams in (Content-Length is checked but not trusted).

FastAPI's own `max_body_size` answers in plain text; this answers in the API's error shape.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware.asgi import send_json
from api.middleware.paths import route_path


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 once more than `max_bytes` arrive on the guarded paths, without buffering the rest."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, slack: int = 64 * 1024, paths: tuple[str, ...] = ("/api/upload",)
    ) -> None:
        # `slack` leaves room for the multipart framing around the file (the route checks the file exactly).
        self.app, self.max_bytes, self.paths = app, max_bytes, paths
        self.threshold = max_bytes + slack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope).rstrip("/") not in self.paths:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.threshold:
            await self._reject(send)
            return
        seen = 0
        exceeded = started = False

        async def guarded_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.threshold:
                    exceeded = True
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # The app may have caught _TooLarge (FastAPI turns any error while reading a form into
                # 400 "There was an error parsing the body"): its answer is replaced by ours.
                if not started:
                    started = True
                    await self._reject(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)
        except ExceptionGroup as group:  # anyio task groups wrap it
            if group.subgroup(_TooLarge) is None or started:
                raise
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_json(
            send,
            413,
            {
                "detail": f"upload is larger than {self.max_bytes:,} bytes",
                "errors": [
                    {
                        "row": 0,
                        "column": "file",
                        "message": f"the limit is {self.max_bytes:,} bytes (IMGPIPE_MAX_UPLOAD_BYTES)",
                    }
                ],
            },
            close=True,
        )
