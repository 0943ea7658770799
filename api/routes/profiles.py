"""Output profiles: the built-in ones and this key's own (`GET/PUT/DELETE /api/profiles/{name}`)."""

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response, status
from starlette.concurrency import run_in_threadpool

from api.deps import OwnerDep, SessionDep
from api.errors import AUTH_ERRORS, ApiError
from api.schemas.errors import ErrorResponse
from api.schemas.profiles import ProfileDocument, ProfileList
from image_pipeline.domain.db.profiles import delete_profile
from image_pipeline.domain.profiles import (
    BUILTIN,
    DEFAULT,
    NAME_PATTERN,
    ProfileError,
    get_tenant_profile,
    parse_profile,
    profile_error_items,
    put_tenant_profile,
    tenant_profiles,
)

router = APIRouter(tags=["profiles"])
_ERRORS = AUTH_ERRORS


def _shown(profile, source: str) -> dict:
    return {"name": profile.name, "source": source, "renditions": [r.model_dump() for r in profile.renditions]}


@router.get("/profiles", response_model=ProfileList, responses=_ERRORS)
def list_profiles(owner: OwnerDep, session: SessionDep) -> dict[str, Any]:
    """Every profile this key can name on upload: `default` (the seed's one JPEG), built-ins, its own."""
    own = tenant_profiles(session, owner)
    shown = [{"name": DEFAULT, "source": "builtin", "renditions": []}]
    shown += [_shown(p, "builtin") for name, p in sorted(BUILTIN.items()) if name not in own]
    shown += [_shown(p, "tenant") for _, p in sorted(own.items())]
    return {"profiles": shown}


def _nameable(name: str) -> bool:
    """Whether a profile can have this name: any other (a NUL byte, 300 characters) names none, and is
    answered without a database round trip (PostgreSQL refuses NUL in text outright)."""
    return re.fullmatch(NAME_PATTERN, name) is not None


@router.get(
    "/profiles/{name}",
    response_model=ProfileDocument,
    responses={**_ERRORS, 404: {"model": ErrorResponse, "description": "no such profile"}},
)
def read_profile(name: str, owner: OwnerDep, session: SessionDep) -> dict[str, Any]:
    """A profile this key can name: its own, else a built-in one."""
    if not _nameable(name):
        raise ApiError(404, "no such profile")
    own = get_tenant_profile(session, owner, name)
    if own is not None:
        return _shown(own, "tenant")
    if name in BUILTIN:
        return _shown(BUILTIN[name], "builtin")
    raise ApiError(404, "no such profile")


@router.put(
    "/profiles/{name}",
    response_model=ProfileDocument,
    responses={**_ERRORS, 422: {"model": ErrorResponse, "description": "invalid profile (every field's problem)"}},
)
async def write_profile(
    name: str,
    owner: OwnerDep,
    session: SessionDep,
    response: Response,
    body: Annotated[Any, Body(examples=[{"renditions": [{"name": "thumb", "format": "webp", "width": 300}]}])],
) -> dict[str, Any]:
    """Create or replace this key's profile `name` (it hides a built-in of the same name for this key)."""
    if name == DEFAULT:
        raise ApiError(422, "`default` is the seed's output and cannot be replaced",
                       [{"row": 0, "column": "name", "message": "reserved"}])  # fmt: skip
    try:
        profile = parse_profile(body, name)
    except ProfileError as exc:
        raise ApiError(422, f"profile refused: {exc}", profile_error_items(exc)) from None
    try:
        created = await run_in_threadpool(put_tenant_profile, session, owner, profile)
    except ValueError as exc:
        raise ApiError(422, str(exc), [{"row": 0, "column": "name", "message": str(exc)}]) from None
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _shown(profile, "tenant")


@router.delete(
    "/profiles/{name}",
    status_code=204,
    responses={**_ERRORS, 404: {"model": ErrorResponse, "description": "no such profile of this key"}},
)
def remove_profile(name: str, owner: OwnerDep, session: SessionDep) -> Response:
    """Delete this key's profile `name` (requests accepted with it keep the copy they froze)."""
    if not _nameable(name) or not delete_profile(session, owner, name):
        raise ApiError(404, "no such profile of this key")
    return Response(status_code=204)
