"""`imgpipe`: the command-line door. Each subcommand group lives in its own module and registers here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from image_pipeline.cli import db, keys, requests, serve

# Each module exposes `register(subparsers)`; handlers are set with `parser.set_defaults(func=...)`.
COMMAND_MODULES: list[Callable[[argparse._SubParsersAction], None]] = [
    db.register,
    keys.register,
    requests.register,
    serve.register,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgpipe", description="image-pipeline command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in COMMAND_MODULES:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
