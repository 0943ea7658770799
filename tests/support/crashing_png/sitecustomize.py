"""Loaded by every Python process started with this directory on PYTHONPATH (spawned codec processes
included): a PNG carrying the text chunk `crash=me` kills the process that decodes it with SIGSEGV,
as a native decoder crash would. Fault injection into Pillow (a third-party library), for
tests/domain/request/test_chunk_crash.py."""

import os
import signal

from PIL import PngImagePlugin

_open = PngImagePlugin.PngImageFile._open


def _crashing_open(self) -> None:
    _open(self)
    if self.info.get("crash") == "me":
        os.kill(os.getpid(), signal.SIGSEGV)


PngImagePlugin.PngImageFile._open = _crashing_open
