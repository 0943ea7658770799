"""Dependencies routes declare in their signatures: settings, a DB session, the object store, the cache,
the caller (owner) and the caller's own request (`OwnedRequestDep`: another key's request is a 404)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.auth import authenticate
from api.errors import request_not_found
from image_pipeline.domain.db.models import ImageRequest
from image_pipeline.domain.db.requests import get_request
from image_pipeline.domain.objects import ObjectStore
from image_pipeline.domain.request.fast_launch import FastLauncher
from image_pipeline.domain.request.status_cache import StatusCache
from image_pipeline.domain.settings import Settings
from image_pipeline.domain.telemetry import tracing
from image_pipeline.domain.telemetry.logs import bind


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


def get_cache(request: Request) -> StatusCache:
    return request.app.state.cache


def get_launcher(request: Request) -> FastLauncher | None:
    return getattr(request.app.state, "launcher", None)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
CacheDep = Annotated[StatusCache, Depends(get_cache)]
LauncherDep = Annotated[FastLauncher | None, Depends(get_launcher)]
OwnerDep = Annotated[str, Depends(authenticate)]


def get_owned_request(request_id: str, owner: OwnerDep, session: SessionDep) -> ImageRequest:
    """The request `request_id` of the calling key; 404 when it does not exist or is another key's."""
    req = get_request(session, request_id, owner)
    if req is None:
        raise request_not_found(request_id)
    bind(request_id=request_id)
    tracing.tag_current(request_id=request_id)
    return req


OwnedRequestDep = Annotated[ImageRequest, Depends(get_owned_request)]
