"""`imgpipe submit | status | download | cancel`: the REST API from a terminal (IMGPIPE_API_URL, IMGPIPE_API_KEY)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from image_pipeline.domain.status import CANCELED, COMPLETED, FAILED, PARTIALLY_FAILED

# Exit codes: 0 done (completed), 1 refused/error/failed, 2 partially failed, 3 canceled.
EXIT_FOR_STATUS = {COMPLETED: 0, PARTIALLY_FAILED: 2, FAILED: 1, CANCELED: 3}


def _connection_args() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", help="API base URL (default: IMGPIPE_API_URL, else http://127.0.0.1:8000)")
    common.add_argument("--api-key", help="bearer API key (default: IMGPIPE_API_KEY)")
    return common


def register(sub: argparse._SubParsersAction) -> None:
    common = _connection_args()
    p = sub.add_parser("submit", parents=[common], help="upload a CSV of product image URLs")
    p.add_argument("file", type=Path, help="CSV: S.No.,Product Name,Input Image Urls")
    p.add_argument("--webhook", metavar="URL", help="where the final, signed event is POSTed")
    p.add_argument("--profile", metavar="NAME", help="output profile: catalogue, web, square or one of your key's")
    example = '{"renditions": [{"name": "thumb", "width": 200}]}'
    p.add_argument("--options", metavar="JSON", help=f"overrides of the profile, e.g. '{example}'")
    p.add_argument("--wait", action="store_true", help="show progress until the request is done")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between progress checks (--wait)")
    p.set_defaults(func=_submit)

    p = sub.add_parser("status", parents=[common], help="status and progress of a request")
    p.add_argument("request_id")
    p.add_argument("--json", action="store_true", help="print the API's JSON document")
    p.set_defaults(func=_status)

    p = sub.add_parser("download", parents=[common], help="download a request's output CSV")
    p.add_argument("request_id")
    p.add_argument("-o", "--output", help="file to write (default <request_id>-output.csv; '-' = stdout)")
    p.set_defaults(func=_download)

    p = sub.add_parser("cancel", parents=[common], help="stop a pending or processing request")
    p.add_argument("request_id")
    p.add_argument("--json", action="store_true", help="print the API's JSON document")
    p.set_defaults(func=_cancel)


def _client(args: argparse.Namespace):
    from image_pipeline.cli.client import ApiClient
    from image_pipeline.domain.settings import Settings

    settings = Settings()
    key = args.api_key or settings.api_key
    if not key:
        raise SystemExit("imgpipe: no API key: pass --api-key or set IMGPIPE_API_KEY")
    return ApiClient(args.api_url or settings.resolved_api_url, key)


def _fail(exc: Exception) -> int:
    from image_pipeline.cli.client import ApiFailure

    if isinstance(exc, ApiFailure):
        print(f"imgpipe: {exc.detail} (HTTP {exc.status_code})", file=sys.stderr)
        for e in exc.errors:
            where = f"row {e['row']}" if e.get("row") else "file"
            column = f", {e['column']}" if e.get("column") else ""
            print(f"  {where}{column}: {e['message']}", file=sys.stderr)
    else:
        print(f"imgpipe: cannot reach the API: {exc}", file=sys.stderr)
    return 1


def _describe(doc: dict) -> str:
    p = doc["progress"]
    line = f"{doc['request_id']}  {doc['status']}  {p['done']} done, {p['failed']} failed of {p['total']}"
    if doc.get("error"):
        line += f"  ({doc['error']})"
    return line


def _submit(args: argparse.Namespace) -> int:
    import httpx

    from image_pipeline.cli.client import ApiFailure

    if not args.file.is_file():
        print(f"imgpipe: no such file: {args.file}", file=sys.stderr)
        return 1
    try:
        with _client(args) as api:
            accepted = api.upload(args.file, args.webhook, args.profile, args.options)
            print(f"{accepted['request_id']}  {accepted['message']}", flush=True)
            if not args.wait:
                return 0
            doc = _watch(api, accepted["request_id"], args.interval)
    except (ApiFailure, httpx.HTTPError) as exc:
        return _fail(exc)
    print(_describe(doc))
    if doc.get("output_csv_url"):
        print(f"output CSV: imgpipe download {doc['request_id']}")
    return EXIT_FOR_STATUS[doc["status"]]


def _watch(api, request_id: str, interval: float) -> dict:
    from tqdm import tqdm

    doc: dict = {}
    with tqdm(total=None, unit="img", desc="images", file=sys.stderr, dynamic_ncols=True) as bar:
        for doc in api.watch(request_id, interval):
            p = doc["progress"]
            bar.total = p["total"]
            bar.n = p["done"] + p["failed"]
            bar.set_postfix_str(f"{doc['status']}, {p['failed']} failed", refresh=False)
            bar.refresh()
    return doc


def _status(args: argparse.Namespace) -> int:
    import httpx

    from image_pipeline.cli.client import ApiFailure

    try:
        with _client(args) as api:
            doc = api.status(args.request_id)
    except (ApiFailure, httpx.HTTPError) as exc:
        return _fail(exc)
    print(json.dumps(doc, indent=2) if args.json else _describe(doc))
    return 0


def _download(args: argparse.Namespace) -> int:
    import httpx

    from image_pipeline.cli.client import ApiFailure

    target = args.output or f"{args.request_id}-output.csv"
    try:
        with _client(args) as api:
            if target == "-":
                api.download(args.request_id, sys.stdout.buffer)
                return 0
            tmp = Path(target + ".part")
            try:
                with tmp.open("wb") as out:
                    n = api.download(args.request_id, out)
                tmp.replace(target)
            finally:
                tmp.unlink(missing_ok=True)
    except (ApiFailure, httpx.HTTPError) as exc:
        return _fail(exc)
    print(f"wrote {target} ({n:,} bytes)")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    """Exit 0 when the request is canceled (now or before), 1 when it had already finished (409) or the
    call failed."""
    import httpx

    from image_pipeline.cli.client import ApiFailure

    try:
        with _client(args) as api:
            doc = api.cancel(args.request_id)
    except (ApiFailure, httpx.HTTPError) as exc:
        return _fail(exc)
    print(json.dumps(doc, indent=2) if args.json else _describe(doc))
    return 0
