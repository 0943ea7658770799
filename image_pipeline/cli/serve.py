"""`imgpipe serve`: the whole stack in the foreground, like `make up` (API + web page, Dagster UI, daemon)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the API, web page, Dagster UI and daemon (Ctrl-C stops)")
    p.set_defaults(func=_serve)


def _serve(_: argparse.Namespace) -> int:
    from image_pipeline.cli.devstack import main

    return main()
