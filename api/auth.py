"""Bearer API keys. The tenant ("owner") of a request is derived from the key that created it.

Keys come from two places: the `IMGPIPE_API_KEYS` env list (simple deployments; compared in constant
time against every entry) and the `api_keys` table (`imgpipe keys create/revoke`; stored hashed).
Either way the owner id is `key_` + the first 24 hex digits of the key's SHA-256, so a key keeps
its requests when it moves from the env list into the database.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

from image_pipeline.domain.db.api_keys import find_active_key, is_revoked, key_hash, owner_for_hash
from image_pipeline.domain.telemetry.logs import bind

MAX_KEY_CHARS = 256


def owner_of(key: str) -> str:
    """A stable, non-reversible tenant id for a key (the key itself is never stored)."""
    return owner_for_hash(key_hash(key))


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def authenticate(request: Request) -> str:
    """The caller's owner id; 401 when the bearer key is missing, unknown or revoked (a key revoked with
    `imgpipe keys revoke` is refused even while it is still listed in `IMGPIPE_API_KEYS`)."""
    owner = _authenticate(request)
    bind(tenant=owner)  # the request's log lines carry it from here on
    return owner


def _authenticate(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("missing bearer API key (Authorization: Bearer <key>)")
    if len(token) > MAX_KEY_CHARS or len(token) < request.app.state.settings.api_key_min_chars:
        raise _unauthorized("invalid API key")
    ok = False
    for known in request.app.state.settings.api_key_list:
        ok |= hmac.compare_digest(known.encode(), token.encode())
    with request.app.state.sessions() as session:
        if ok:  # listed in IMGPIPE_API_KEYS: valid unless it was revoked in the database
            if is_revoked(session, token):
                raise _unauthorized("invalid API key")
            return owner_of(token)
        row = find_active_key(session, token)
    if row is None:
        raise _unauthorized("invalid API key")
    return owner_for_hash(row.hash)
