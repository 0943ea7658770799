"""Child processes of the launchers: `make up` / `imgpipe serve` (devstack), the tests' stacks and the
benchmarks start, watch and stop their API, Dagster and worker processes with these.

- `spawn`: a command in its own process group (stopping the group stops what it started too: a
  daemon's code server, celery's pool), or in ours (`new_group=False`: a terminal's Ctrl-C reaches
  it); `die_with_parent`: the kernel sends it SIGTERM when the thread that spawned it dies
  (PR_SET_PDEATHSIG), so nothing outlives a launcher that is killed.
- `signal_group`: a signal to the group a child leads, or to the child alone when it leads none.
- `stop`: SIGTERM, a grace period, then SIGKILL to what is left of each group.
- `answers` / `wait_http`: whether a URL answers 200 / wait until it does.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Loopback probes never go through a proxy the environment may name.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ProcessExited(RuntimeError):
    """A child exited while we waited for it to answer."""


def _parent_death_signal(sig: int) -> Callable[[], None] | None:
    """A preexec function asking for `sig` when the parent dies. libc is loaded here, in the parent:
    between fork and exec the child makes only the one call."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return None

    def set_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, sig)

    return set_signal


def spawn(
    cmd: Sequence[str | os.PathLike],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    output: Path | int | None = None,
    new_group: bool = True,
    die_with_parent: bool = False,
) -> subprocess.Popen:
    """Start `cmd` with stdin closed. `output`: a log file (stdout and stderr; truncated), a subprocess
    constant such as DEVNULL, or None to share ours."""
    log = open(output, "wb") if isinstance(output, Path) else None  # closed below: the child has its copy
    try:
        return subprocess.Popen(
            [str(c) for c in cmd],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log or output,
            stderr=None if output is None else subprocess.STDOUT,
            start_new_session=new_group,
            preexec_fn=_parent_death_signal(signal.SIGTERM) if die_with_parent else None,
        )
    finally:
        if log:
            log.close()


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """`sig` to the process group `proc` leads (what is left of it, once `proc` has exited), or to `proc`
    alone while it runs in a group it does not lead. Nothing left: nothing to do."""
    try:
        os.killpg(proc.pid, sig)  # no group of that id unless proc leads it: PIDs in use as PGIDs are not reused
    except (ProcessLookupError, PermissionError):
        if proc.poll() is None:
            proc.send_signal(sig)


def stop(procs: subprocess.Popen | Iterable[subprocess.Popen], grace: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """`sig` (SIGTERM) to each child's group, up to `grace` seconds in all for the children to exit, then
    SIGKILL to whatever is left of each group: a child that did not stop, and what outlived one that did."""
    procs = [procs] if isinstance(procs, subprocess.Popen) else list(procs)
    for p in procs:
        signal_group(p, sig)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        signal_group(p, signal.SIGKILL)
        p.wait()


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether `url` answers 200 now."""
    try:
        with _OPENER.open(url, timeout=timeout) as r:
            return r.status == 200
    except (OSError, http.client.HTTPException):
        return False


def wait_http(
    url: str,
    timeout: float = 60.0,
    *,
    procs: Iterable[subprocess.Popen] = (),
    detail: Callable[[], str] | None = None,
    interval: float = 0.2,
) -> None:
    """Until `url` answers 200: TimeoutError after `timeout` seconds, ProcessExited as soon as one of
    `procs` exits. `detail()` (e.g. a log tail) is added to either message."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while not answers(url):
        exited = next((p for p in procs if p.poll() is not None), None)
        if exited is not None or time.monotonic() > deadline:
            if exited is not None:
                msg = f"{exited.args[0]} exited with code {exited.returncode} before {url} answered"
            else:
                msg = f"{url} did not answer in {timeout:g} s"
            if detail:
                msg += "\n" + detail()
            raise ProcessExited(msg) if exited is not None else TimeoutError(msg)
        time.sleep(interval)
