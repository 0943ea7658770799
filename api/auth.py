"""Bearer API keys. The tenant ("owner") of a request is derived from the key that created it."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request, status


def owner_of(key: str) -> str:
    """A stable, non-reversible tenant id for a key (the key itself is never stored)."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def authenticate(request: Request) -> str:
    """The caller's owner id; 401 when the bearer key is missing or unknown (compared in constant time)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer API key (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    ok = False
    for known in request.app.state.settings.api_key_list:
        ok |= hmac.compare_digest(known.encode(), token.encode())
    if not ok:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return owner_of(token)
