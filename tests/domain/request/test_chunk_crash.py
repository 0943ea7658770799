"""Issue 15 item 6: one image that kills its process (a native crash, the OOM killer) fails that URL, not
the request — with the default thread pool too, where the process that dies is the run's own.

A real native crash is injected into Pillow (tests/support/crashing_png: a marked PNG makes the process
decoding it die by SIGSEGV). Each attempt at the chunk runs in a process of its own, as a Dagster run
worker would: the first dies; the next, seeing the trace the dead attempt left, decodes in processes.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from PIL import Image, PngImagePlugin

from image_pipeline.domain.keys import chunk_attempt_key
from image_pipeline.domain.request.chunks import plan_chunks
from image_pipeline.domain.request.validate import validate_request
from image_pipeline.domain.services import build_context
from tests.support.inputs import csv_bytes, make_image
from tests.support.paths import ROOT as REPO_ROOT

CRASHING = Path(__file__).resolve().parents[2] / "support" / "crashing_png"

ATTEMPT = """
import json, sys
from image_pipeline.domain.request.chunks import Chunk, process_chunk
from image_pipeline.domain.services import build_context
from image_pipeline.domain.settings import Settings
settings = Settings(_env_file=None, **json.loads(sys.argv[1]))
print(json.dumps(process_chunk(build_context(settings), Chunk.from_dict(json.loads(sys.argv[2]))).as_dict()))
"""


def _poison_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("crash", "me")
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _attempt(settings_json: str, chunk: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CRASHING), str(REPO_ROOT)])}
    return subprocess.run(
        [sys.executable, "-c", ATTEMPT, settings_json, json.dumps(chunk)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO_ROOT,
    )


def test_an_image_that_kills_the_run_process_fails_alone_on_the_next_attempt(
    make_settings, bucket, image_server, submit
) -> None:
    """Fails on main before the fix: every attempt decoded on threads in the run's own process, so the
    poison image killed each retry in turn and the request never finished."""
    settings = make_settings(s3_bucket=bucket, fetch_allow=image_server.allow, encode_pool="thread")
    good = [image_server.add(f"/g{i}.jpg", make_image(size=(40, 30), seed=i)) for i in range(4)]
    poison = image_server.add("/poison.png", _poison_png(), "image/png")
    rid = submit(csv_bytes([("1", "Shoe", good[:2]), ("2", "Hat", [poison, *good[2:]])]))
    ctx = build_context(settings)
    validate_request(ctx, rid)
    [chunk] = plan_chunks(ctx, rid, 100, 1_000)
    settings_json = settings.model_dump_json()

    first = _attempt(settings_json, chunk.as_dict())
    assert first.returncode == -signal.SIGSEGV, (first.returncode, first.stderr[-2000:])
    assert ctx.store.exists(chunk_attempt_key(rid, chunk.number))  # the dead attempt's trace

    second = _attempt(settings_json, chunk.as_dict())
    assert second.returncode == 0, (second.returncode, second.stderr[-2000:])
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert (summary["done"], summary["failed"]) == (4, 1), summary
    assert any(url == poison and "crashed the decoder" in err for url, err in summary["errors"]), summary
    assert not ctx.store.exists(chunk_attempt_key(rid, chunk.number))  # an attempt that ends clears it
