"""`imgpipe keys create NAME | list | revoke ID`: API keys in the app database (stored hashed).

`create` prints the key once; it cannot be shown again (only its SHA-256 is kept). Keys in the
`IMGPIPE_API_KEYS` env list keep working alongside these.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="API keys (stored hashed in the app database)")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name", help="who or what the key is for")
    create.set_defaults(func=_create)
    ls = ksub.add_parser("list", help="list keys (never the keys themselves)")
    ls.set_defaults(func=_list)
    revoke = ksub.add_parser("revoke", help="revoke a key by its id (requests made with it stay stored)")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=_revoke)


def _engine():
    from image_pipeline.domain.db.engine import make_engine, upgrade
    from image_pipeline.domain.settings import Settings

    url = Settings().resolved_database_url
    upgrade(url)  # idempotent: the table exists even before the API first started
    return make_engine(url)


def _create(args: argparse.Namespace) -> int:
    from image_pipeline.domain.db.api_keys import create_key, owner_for_hash
    from image_pipeline.domain.db.engine import session_factory

    engine = _engine()
    try:
        with session_factory(engine)() as s:
            try:
                row, plain = create_key(s, args.name)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(plain)
            print(
                f"created key {row.id} ({row.name!r}, tenant {owner_for_hash(row.hash)}); "
                "this is the only time the key is shown",
                file=sys.stderr,
            )
    finally:
        engine.dispose()
    return 0


def _list(_: argparse.Namespace) -> int:
    from image_pipeline.domain.db.api_keys import list_keys
    from image_pipeline.domain.db.engine import session_factory

    engine = _engine()
    try:
        with session_factory(engine)() as s:
            rows = list_keys(s)
            print(f"{'id':>5}  {'prefix':<12}  {'created (UTC)':<19}  {'revoked (UTC)':<19}  name")
            for r in rows:
                revoked = r.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if r.revoked_at else "-"
                created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
                print(f"{r.id:>5}  {r.prefix + '…':<12}  {created:<19}  {revoked:<19}  {r.name}")
    finally:
        engine.dispose()
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from image_pipeline.domain.db.api_keys import revoke_key
    from image_pipeline.domain.db.engine import session_factory

    engine = _engine()
    try:
        with session_factory(engine)() as s:
            row = revoke_key(s, args.id)
            if row is None:
                print(f"error: no key with id {args.id}", file=sys.stderr)
                return 1
            print(f"key {row.id} ({row.name!r}) revoked at {row.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
    finally:
        engine.dispose()
    return 0
