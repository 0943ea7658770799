"""Standard Webhooks signing secrets: what a valid one looks like, and how a new one is made.

A secret is `whsec_` + base64 of at least 24 random bytes (the spec asks for 24 to 64). Values that
someone typed rather than generated are refused wherever a secret is read (settings at start-up, the
database at signing): a `change-me`-style placeholder, or base64 of printable text (24 random bytes
are all printable ASCII about once in 10^10 tries), or too few distinct bytes to be random.
"""

from __future__ import annotations

import base64
import binascii
import secrets

PREFIX = "whsec_"
MIN_BYTES = 24
SECRET_BYTES = 32
PLACEHOLDERS = ("change", "replace", "example", "placeholder", "default", "secret", "password", "xxxx", "todo")


class InvalidSecret(ValueError):
    """A webhook secret that must not sign anything; the message says why (never the secret itself)."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_secret(value: str, what: str = "webhook secret") -> str:
    """`value` if it is a usable secret, else InvalidSecret."""
    value = value.strip()
    if not value.startswith(PREFIX):
        raise InvalidSecret(f"{what} must start with {PREFIX!r} (Standard Webhooks format)")
    body = value[len(PREFIX) :]
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret(f"{what} is not valid base64 after {PREFIX!r}") from exc
    if len(raw) < MIN_BYTES:
        raise InvalidSecret(f"{what} must hold at least {MIN_BYTES} random bytes (has {len(raw)})")
    if any(p in raw.decode("latin-1").lower() for p in PLACEHOLDERS):
        raise InvalidSecret(f"{what} looks like a placeholder; generate one (see the README)")
    if all(0x20 <= b < 0x7F for b in raw) or len(set(raw)) < MIN_BYTES // 2:
        raise InvalidSecret(f"{what} is not random bytes (base64 of typed text?); generate one (see the README)")
    return value
