"""The last line of the error contract: an exception nothing else handled becomes a JSON 500 in the API's
error shape. Installed just inside the security headers, so that answer carries them too (Starlette's own
500 comes from its outermost middleware, in plain text, past every other middleware)."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware.asgi import send_json

log = logging.getLogger("imgpipe.api")
INTERNAL_ERROR = {"detail": "internal error", "errors": []}


class InternalErrorAsJson:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:  # a streamed body broke off: nothing left to answer with
                raise
            await send_json(send, 500, INTERNAL_ERROR)
            raise  # still logged (and raised in tests) by the server; the client already has its answer
