"""The path a middleware must compare: the route path, without the mount prefix.

Under `uvicorn --root-path /prefix` (or behind a proxy that sets it) `scope["path"]` holds the full
path, `/prefix/api/upload`, while routes match `/api/upload` (Starlette strips `root_path` when it
routes). A middleware comparing `scope["path"]` would miss every request and skip its checks.
"""

from __future__ import annotations

from starlette.types import Scope


def route_path(scope: Scope) -> str:
    """`scope["path"]` without `scope["root_path"]`, the way Starlette's router sees it."""
    path: str = scope["path"]
    root = scope.get("root_path", "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path
