"""Output profiles: a named list of renditions, validated once (at upload or when a tenant saves one)
and frozen into the request, so a later change to a profile never changes a request already accepted.

No profile (`default`) is the seed's output: one JPEG per URL at `IMGPIPE_JPEG_QUALITY`, its own size
(or `IMGPIPE_MAX_DIMENSION`), now colour-correct. A profile's first rendition fills the output CSV's
`Output Image Urls`; each further one adds a column `Output Image Urls (<name>)`, in profile order.

`options` on an upload are inline overrides of the chosen profile (or of `default`): a rendition
given with a name the profile has is merged over it field by field; a new name is appended.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.orm import Session

from image_pipeline.domain.db.profiles import profile_bodies, profile_body, put_profile_body
from image_pipeline.domain.images.renditions import Rendition

DEFAULT = "default"
MAX_RENDITIONS = 8
MAX_SIDE = 8192
# `auto` compares formats at one perceived quality, so it always has a target: 70 is SSIMULACRA2's "high".
AUTO_TARGET = 70.0
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class RenditionSpec(BaseModel):
    """One rendition as a caller writes it (JSON); `to_rendition` gives the codec's frozen value."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="lower-case letters, digits, _ and -; 1-32 characters")
    format: Literal["jpeg", "webp", "avif", "png", "auto"] = "jpeg"
    quality: int = Field(80, ge=1, le=100, description="the encoder's quality number (ignored with a target)")
    target: float | None = Field(
        None,
        ge=30,
        le=95,
        description="SSIMULACRA2 score to reach (90 visually lossless, 80 very high, 70 high, 50 medium): "
        f"the lowest quality that reaches it is searched per image; format auto defaults to {AUTO_TARGET:g}",
    )
    width: int | None = Field(None, ge=1, le=MAX_SIDE)
    height: int | None = Field(None, ge=1, le=MAX_SIDE)
    fit: Literal["inside", "cover", "pad", "trim_pad"] = "inside"
    background: str = Field("#ffffff", pattern=r"^#[0-9a-fA-F]{6}$")
    keep_alpha: bool = False
    margin: int = Field(0, ge=0, le=MAX_SIDE // 2)
    upscale: bool = False
    progressive: bool = False
    keep_copyright: bool = False

    @model_validator(mode="after")
    def _box(self) -> RenditionSpec:
        if self.fit != "inside" and not (self.width and self.height):
            raise ValueError(f"fit {self.fit!r} needs both width and height")
        if self.fit == "trim_pad" and 2 * self.margin >= min(self.width or 0, self.height or 0):
            raise ValueError("margin must leave room for the image inside width and height")
        if self.format == "auto" and self.target is None:
            self.target = AUTO_TARGET
        return self

    def to_rendition(self) -> Rendition:
        bg = self.background.lstrip("#")
        return Rendition(
            name=self.name,
            format=self.format,
            quality=self.quality,
            width=self.width,
            height=self.height,
            fit=self.fit,
            background=(int(bg[0:2], 16), int(bg[2:4], 16), int(bg[4:6], 16)),
            keep_alpha=self.keep_alpha,
            margin=self.margin,
            upscale=self.upscale,
            progressive=self.progressive,
            keep_copyright=self.keep_copyright,
            target=self.target,
        )


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    renditions: list[RenditionSpec] = Field(min_length=1, max_length=MAX_RENDITIONS)

    @model_validator(mode="after")
    def _unique(self) -> Profile:
        names = [r.name for r in self.renditions]
        if len(set(names)) != len(names):
            raise ValueError("rendition names must be unique")
        return self

    def renditions_tuple(self) -> tuple[Rendition, ...]:
        return tuple(r.to_rendition() for r in self.renditions)

    def canonical_json(self) -> str:
        """The frozen form stored with a request (every field explicit, sorted): its hash is part of
        the upload's idempotency fingerprint, and a later change of a default changes no stored request."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def fingerprint(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def _builtin(name: str, *renditions: dict[str, Any]) -> Profile:
    return Profile(name=name, renditions=[RenditionSpec(**r) for r in renditions])


# Catalogue sizes as shops use them: a zoom image, a padded square for listing grids, a thumbnail.
BUILTIN: dict[str, Profile] = {
    p.name: p
    for p in (
        _builtin(
            "catalogue",
            {"name": "zoom", "format": "jpeg", "quality": 85, "width": 2048, "height": 2048, "progressive": True},
            {"name": "square", "format": "jpeg", "quality": 82, "width": 1000, "height": 1000, "fit": "pad"},
            {"name": "thumb", "format": "webp", "quality": 80, "width": 300, "height": 300},
        ),
        _builtin(
            "web",
            {"name": "large", "format": "auto", "target": 75, "width": 1600, "height": 1600},
            {"name": "thumb", "format": "auto", "target": 70, "width": 400, "height": 400, "fit": "cover"},
        ),
        _builtin(
            "square",
            {
                "name": "square",
                "format": "jpeg",
                "quality": 82,
                "width": 1000,
                "height": 1000,
                "fit": "trim_pad",
                "margin": 40,
            },
        ),  # fmt: skip
    )
}


class ProfileError(ValueError):
    """A profile or options that cannot be used; `errors` are field-level (pydantic's shape)."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [{"loc": [], "msg": message, "type": "value_error"}]


def default_profile(quality: int, max_dimension: int | None) -> Profile:
    """The seed's output as a profile (used when `options` override `default`)."""
    side = {"width": max_dimension, "height": max_dimension} if max_dimension else {}
    return _builtin(DEFAULT, {"name": "image", "format": "jpeg", "quality": quality, **side})


def parse_profile(body: Any, name: str) -> Profile:
    """A tenant's profile from JSON (`PUT /api/profiles/{name}`): `{"renditions": [...]}`."""
    if not isinstance(body, dict):
        raise ProfileError("a profile is a JSON object with a list of renditions")
    try:
        return Profile(**{**body, "name": name})
    except ValidationError as exc:
        raise ProfileError("invalid profile", _errors(exc)) from None


def resolve(
    name: str | None,
    options: Any,
    *,
    tenant_profiles: dict[str, Profile] | None = None,
    seed_quality: int = 50,
    max_dimension: int | None = None,
) -> Profile | None:
    """The profile an upload asked for, with its `options` applied; None = the seed's output as is.

    A tenant's own profile of a name comes before a built-in one of the same name."""
    chosen: Profile | None
    if name in (None, "", DEFAULT):
        chosen = None
    elif tenant_profiles and name in tenant_profiles:
        chosen = tenant_profiles[name]
    elif name in BUILTIN:
        chosen = BUILTIN[name]
    else:
        known = sorted({*BUILTIN, *(tenant_profiles or {}), DEFAULT})
        raise ProfileError(
            f"unknown profile {name!r}", [{"loc": ["profile"], "msg": f"unknown profile; known: {', '.join(known)}",
                                           "type": "value_error"}]
        )  # fmt: skip
    if options in (None, "", {}):
        return chosen
    base = chosen or default_profile(seed_quality, max_dimension)
    return apply_options(base, options)


def apply_options(base: Profile, options: Any) -> Profile:
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            raise ProfileError("options must be JSON", [_err(["options"], "not valid JSON")]) from None
    if not isinstance(options, dict) or set(options) - {"renditions"}:
        raise ProfileError(
            "options must be a JSON object with a `renditions` list",
            [_err(["options"], 'expected {"renditions": [...]}')],
        )
    given = options.get("renditions")
    if not isinstance(given, list) or not all(isinstance(r, dict) for r in given):
        raise ProfileError("options.renditions must be a list of objects", [_err(["options", "renditions"], "a list")])
    merged = {r.name: r.model_dump() for r in base.renditions}
    for i, r in enumerate(given):
        name = r.get("name")
        if not isinstance(name, str):
            raise ProfileError("every rendition in options needs a name", [_err(["options", "renditions", i, "name"],
                                                                               "required")])  # fmt: skip
        merged[name] = {**merged.get(name, {}), **r}
    try:
        return Profile(name=base.name, renditions=list(merged.values()))
    except ValidationError as exc:
        raise ProfileError("invalid options", _errors(exc, prefix=["options"])) from None


def tenant_profiles(session: Session, owner: str) -> dict[str, Profile]:
    """Every profile of tenant `owner`, parsed."""
    return {name: Profile.model_validate_json(body) for name, body in profile_bodies(session, owner).items()}


def get_tenant_profile(session: Session, owner: str, name: str) -> Profile | None:
    body = profile_body(session, owner, name)
    return Profile.model_validate_json(body) if body else None


def put_tenant_profile(session: Session, owner: str, profile: Profile) -> bool:
    """Create or replace `owner`'s profile; True when created (ValueError past the per-tenant cap)."""
    return put_profile_body(session, owner, profile.name, profile.canonical_json())


def profile_from_json(text: str | None) -> Profile | None:
    """A request's frozen profile as stored (None: the seed's output)."""
    return Profile.model_validate_json(text) if text else None


def profile_error_items(exc: ProfileError) -> list[dict[str, Any]]:
    """The API's error items (row 0, `column` the field's path, e.g. `options.renditions[0].quality`)."""
    items = []
    for e in exc.errors:
        path = ""
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        items.append({"row": 0, "column": path or "profile", "message": e["msg"]})
    return items


def _err(loc: list, msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": "value_error"}


def _errors(exc: ValidationError, prefix: list | None = None) -> list[dict[str, Any]]:
    return [
        {"loc": [*(prefix or []), *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
