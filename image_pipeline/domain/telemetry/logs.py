"""`IMGPIPE_LOG_FORMAT=json`: one JSON object per log line, carrying the `request_id`, `run_id` and
`tenant` of the work it is about wherever they are known.

They are known from a context, not passed to every call: the API's middleware opens one per HTTP
request (`log_context`) and routes fill it in (`bind`); a run's step opens one with its request, run
and tenant. The context is a dict held in a contextvar, so a value bound in a threadpool dependency
(which runs in a copy of the context) is seen by the route and the access log line too. Plain text,
the default (what `make up` prints), is left exactly as Python and uvicorn configure it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Literal

CONTEXT_FIELDS = ("request_id", "run_id", "tenant")
# Our own loggers; uvicorn's are re-pointed at the JSON handler too (its access and error lines).
OUR_LOGGERS = ("image_pipeline", "imgpipe", "api")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

_context: ContextVar[dict[str, str] | None] = ContextVar("imgpipe_log_context", default=None)


@contextmanager
def log_context(**fields: str | None) -> Iterator[dict[str, str]]:
    """A fresh logging context for one unit of work (an HTTP request, a run's step)."""
    values = {k: v for k, v in fields.items() if v}
    token = _context.set(values)
    try:
        yield values
    finally:
        _context.reset(token)


def bind(**fields: str | None) -> None:
    """Add what became known (the request id once it is made, the tenant once the key is checked)."""
    values = _context.get()
    if values is None:
        values = {}
        _context.set(values)
    values.update({k: v for k, v in fields.items() if v})


def current() -> dict[str, str]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copies the context's fields onto each record, where the JSON formatter picks them up."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def json_handler(stream: IO[str] | None = None) -> logging.Handler:
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.json import JsonFormatter  # only where JSON is asked for

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's ANSI-coloured copy of the message
        )
    )
    handler.addFilter(ContextFilter())
    handler.set_name("imgpipe-json")
    return handler


def configure_logging(fmt: Literal["text", "json"], stream: IO[str] | None = None) -> None:
    """Install the JSON handler (once per process) on the root logger and uvicorn's loggers; our own
    loggers log from INFO. `text` changes nothing."""
    if fmt != "json":
        return
    root = logging.getLogger()
    if any(h.get_name() == "imgpipe-json" for h in root.handlers) and stream is None:
        return
    handler = json_handler(stream)
    root.handlers = [h for h in root.handlers if h.get_name() != "imgpipe-json"] + [handler]
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if logger.handlers:  # uvicorn's own config: its lines become JSON objects as well
            logger.handlers = [handler]
