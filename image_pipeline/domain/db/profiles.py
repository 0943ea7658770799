"""Tenants' output profiles in the app database, scoped to the API key's tenant (`owner`).

Stored as canonical JSON (`domain.profiles.Profile.canonical_json`); this layer keeps text, the domain
parses it (the database layer does not depend on the codec's types)."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from image_pipeline.domain.clock import utcnow
from image_pipeline.domain.db.models import OutputProfile

MAX_PROFILES_PER_TENANT = 50


def profile_bodies(session: Session, owner: str) -> dict[str, str]:
    """name -> canonical JSON of every profile of `owner`."""
    rows = session.execute(select(OutputProfile.name, OutputProfile.body).where(OutputProfile.owner == owner))
    return {row.name: row.body for row in rows}


def profile_body(session: Session, owner: str, name: str) -> str | None:
    return session.execute(
        select(OutputProfile.body).where(OutputProfile.owner == owner, OutputProfile.name == name)
    ).scalar_one_or_none()


def put_profile_body(session: Session, owner: str, name: str, body: str) -> bool:
    """Create or replace; True when it was created. Requests already accepted keep the profile they froze."""
    row = session.execute(
        select(OutputProfile).where(OutputProfile.owner == owner, OutputProfile.name == name)
    ).scalar_one_or_none()
    if row is None:
        count = session.execute(select(func.count()).where(OutputProfile.owner == owner)).scalar_one()
        if count >= MAX_PROFILES_PER_TENANT:
            raise ValueError(f"a tenant keeps at most {MAX_PROFILES_PER_TENANT} profiles")
        session.add(OutputProfile(owner=owner, name=name, body=body))
    else:
        row.body, row.updated_at = body, utcnow()
    session.commit()
    return row is None


def delete_profile(session: Session, owner: str, name: str) -> bool:
    gone = session.execute(delete(OutputProfile).where(OutputProfile.owner == owner, OutputProfile.name == name))
    session.commit()
    return bool(gone.rowcount)
