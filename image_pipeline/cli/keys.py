"""`imgpipe keys create NAME | list | revoke ID | rotate-secret ID`: API keys in the app database
(stored hashed) and their tenants' webhook signing secrets.

`create` prints the key once on stdout (only its SHA-256 is kept) and the tenant's own webhook
signing secret once on stderr (`--json`: both on stdout, for scripts). `rotate-secret` gives the
tenant a new secret; the old ones keep signing for `--overlap-hours` (both signatures are sent), then
retire. Keys in the `IMGPIPE_API_KEYS` env list keep working alongside these; their events are signed
with `IMGPIPE_WEBHOOK_SECRET`.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="API keys (stored hashed in the app database)")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name", help="who or what the key is for")
    create.add_argument("--json", action="store_true", help="print the key and its webhook secret as JSON")
    create.set_defaults(func=_create)
    ls = ksub.add_parser("list", help="list keys (never the keys themselves)")
    ls.set_defaults(func=_list)
    revoke = ksub.add_parser("revoke", help="revoke a key by its id (requests made with it stay stored)")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=_revoke)
    rotate = ksub.add_parser(
        "rotate-secret", help="give a key's tenant a new webhook signing secret (printed once); old ones overlap"
    )
    rotate.add_argument("id", type=int)
    rotate.add_argument(
        "--overlap-hours",
        type=float,
        default=24.0,
        help="how long the current secrets keep signing beside the new one (default 24; 0 = retire now)",
    )
    rotate.add_argument("--json", action="store_true", help="print the new secret as JSON")
    rotate.set_defaults(func=_rotate)


def _engine():
    from image_pipeline.domain.db.engine import make_engine, upgrade
    from image_pipeline.domain.settings import Settings

    url = Settings().resolved_database_url
    upgrade(url)  # idempotent: the table exists even before the API first started
    return make_engine(url)


def _create(args: argparse.Namespace) -> int:
    from image_pipeline.domain.db.api_keys import create_key, owner_for_hash
    from image_pipeline.domain.db.engine import session_factory
    from image_pipeline.domain.db.webhook_secrets import add_secret

    engine = _engine()
    try:
        with session_factory(engine)() as s:
            try:
                row, plain = create_key(s, args.name)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            secret = add_secret(s, row)
            tenant = owner_for_hash(row.hash)
            if args.json:
                print(json.dumps({"id": row.id, "tenant": tenant, "key": plain, "webhook_secret": secret}))
            else:
                print(plain)
                print(f"webhook signing secret: {secret}", file=sys.stderr)
            print(
                f"created key {row.id} ({row.name!r}, tenant {tenant}); "
                "this is the only time the key and its webhook secret are shown",
                file=sys.stderr,
            )
    finally:
        engine.dispose()
    return 0


def _list(_: argparse.Namespace) -> int:
    from image_pipeline.domain.db.api_keys import list_keys, owner_for_hash
    from image_pipeline.domain.db.engine import session_factory
    from image_pipeline.domain.db.webhook_secrets import secret_state

    engine = _engine()
    try:
        with session_factory(engine)() as s:
            rows = list_keys(s)
            print(f"{'id':>5}  {'prefix':<12}  {'created (UTC)':<19}  {'revoked (UTC)':<19}  {'signing':<8}  name")
            for r in rows:
                revoked = r.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if r.revoked_at else "-"
                created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
                signing = secret_state(s, owner_for_hash(r.hash)).replace(" ", "")
                print(f"{r.id:>5}  {r.prefix + '…':<12}  {created:<19}  {revoked:<19}  {signing:<8}  {r.name}")
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


def _rotate(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from image_pipeline.domain.db.engine import session_factory
    from image_pipeline.domain.db.models import ApiKey
    from image_pipeline.domain.db.webhook_secrets import rotate_secret

    if args.overlap_hours < 0:
        print("error: --overlap-hours must be 0 or more", file=sys.stderr)
        return 2
    engine = _engine()
    try:
        with session_factory(engine)() as s:
            row = s.get(ApiKey, args.id)
            if row is None:
                print(f"error: no key with id {args.id}", file=sys.stderr)
                return 1
            secret, retiring = rotate_secret(s, row, timedelta(hours=args.overlap_hours))
            if args.json:
                print(json.dumps({"id": row.id, "webhook_secret": secret, "overlap_hours": args.overlap_hours}))
            else:
                print(secret)
            print(
                f"new webhook signing secret for key {row.id} ({row.name!r}); {retiring} older secret(s) keep "
                f"signing for {args.overlap_hours:g} h; this is the only time the new secret is shown",
                file=sys.stderr,
            )
    finally:
        engine.dispose()
    return 0
