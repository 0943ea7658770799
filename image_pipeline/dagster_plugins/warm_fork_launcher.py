"""A Dagster run launcher that starts each run from a warm process instead of a fresh interpreter.

Dagster's default launcher has the code server *spawn* `dagster api execute_run` for every run: a new
Python process that imports Dagster and the code location before the first step runs. For a 3-image
request that start-up is most of the upload -> webhook time (docs/performance.md). This launcher keeps a
multiprocessing *forkserver* whose one process has already imported Dagster, the code location and
the libraries a run uses (Pillow, simplejpeg, httpx, boto3, the SQLAlchemy ORM); each run is a fork
of it, so it starts without importing anything. The forkserver is single-threaded and has opened no
connection, so forking it is safe (unlike forking the multi-threaded daemon itself).

The run itself executes exactly as under `dagster api execute_run` (same function, same event log,
same cancellation thread); run monitoring's start timeout still applies, and its worker health check
sees a run whose process died (SIGKILL, OOM) so run retries start it again. The process is known by
its PID and its start time (run tags), so a PID the kernel has reused for another process is neither
taken for the run nor signalled by terminate(). Used by `make up`
(deploy/embedded/dagster.yaml); select it in any dagster.yaml with

    run_launcher:
      module: image_pipeline.dagster_plugins.warm_fork_launcher
      class: WarmForkRunLauncher

Runs then execute on the machine of the process that launches them (the daemon, with the
QueuedRunCoordinator), like the default launcher.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from typing import Any

from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData

log = logging.getLogger("imgpipe.run_launcher")

PRELOAD = [
    "dagster",
    "dagster._cli.api",
    # multiprocessing re-runs the launching program's main script (here the dagster-daemon entry
    # point) in every child under the name __mp_main__; with its imports already done that is free.
    "dagster._daemon.cli",
    "dagster._core.storage.event_log.sqlite",
    "dagster._core.storage.runs.sqlite",
    "dagster._core.execution.api",
    "dagster._core.executor.in_process",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "image_pipeline.definitions",
    "image_pipeline.domain.request.context",
    "image_pipeline.domain.images.codec",
    "PIL.Image",
    "PIL.JpegImagePlugin",
    "simplejpeg",
    # SciPy's import (ssimulacra2, the scored first URL of every request) costs ~0.2 s per process.
    "ssimulacra2",
    "boto3",
    "botocore.client",
    "httpx",
    "ssl",
]
PID_TAG = "imgpipe/run_worker_pid"
# The run worker's start time, field 22 (`starttime`) of /proc/<pid>/stat in clock ticks since boot:
# with the PID it names one process for good, so a PID the kernel has since given to another process
# is not mistaken for the run (Linux; elsewhere only the PID is recorded and checked).
START_TAG = "imgpipe/run_worker_starttime"
# What selects this launcher in a dagster.yaml (tests and the benchmark append it to an instance file).
WARM_LAUNCHER_YAML = f"\nrun_launcher:\n  module: {__name__}\n  class: WarmForkRunLauncher\n"


def _die_with_forkserver() -> None:
    """Kill this run if the forkserver goes (the daemon stopped): no orphan run outlives `make up`.

    SIGKILL, not SIGTERM: Dagster defers an interrupt until the running step ends, which for a large
    chunk is minutes. The run is then marked failed by run monitoring and retried when the daemon is
    back; the retry skips every image already stored, so nothing is lost or done twice."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: run monitoring still marks a run whose process is gone


PROC = "/proc"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, starttime) of `pid` from /proc/<pid>/stat, None if there is no such process. The fields
    are read after the last ')': the command name before it may itself hold spaces and parentheses.
    Raises OSError where there is no /proc (not Linux)."""
    try:
        with open(f"{PROC}/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        if not os.path.exists(f"{PROC}/self/stat"):
            raise OSError("no /proc") from None
        return None
    except ProcessLookupError:  # gone while being read
        return None
    return fields[0], int(fields[19])  # field 3 (state) is fields[0], so field 22 (starttime) is [19]


def _start_time(pid: int) -> str | None:
    """What to record as `pid`'s START_TAG: its starttime; "gone" if it has already been reaped (no
    later process with this PID can match that); None where there is no /proc."""
    try:
        stat = _proc_stat(pid)
    except OSError:
        return None
    return str(stat[1]) if stat else "gone"


def _is_worker_alive(pid: int, start: str | None) -> bool:
    """Process `pid` exists, is not a zombie (the forkserver reaps its children, but not instantly) and,
    on Linux, started at `start` (START_TAG): the same process that was launched, not a reused PID. A
    run without START_TAG on Linux (launched before it was recorded) counts as gone: its forkserver has
    restarted since, and took its runs with it (PR_SET_PDEATHSIG)."""
    try:
        stat = _proc_stat(pid)
    except OSError:  # no /proc (not Linux): ask the kernel whether the PID is in use
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start is not None and str(stat[1]) == start


def _execute_run(run_id: str, instance_ref: Any) -> None:  # InstanceRef
    """In the forked child: run `run_id` exactly as `dagster api execute_run` would."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import DagsterInstance

    os.setsid()  # its own process group: terminate() signals the run, not the forkserver
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM -> KeyboardInterrupt -> clean failure
    _die_with_forkserver()
    with DagsterInstance.from_ref(instance_ref) as instance:
        _execute_run_command_body(run_id, instance, lambda _event: None, set_exit_code_on_failure=False)


class WarmForkRunLauncher(RunLauncher, ConfigurableClass):
    """Launches runs as forks of a pre-imported forkserver process (see module doc)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, preload: list[str] | None = None) -> None:
        self._inst_data = inst_data
        self._preload = list(preload or PRELOAD)
        self._ctx: Any = None
        self._lock = threading.Lock()
        self._children: dict[str, Any] = {}
        super().__init__()
        # Warm the forkserver at once in the daemon (the process that launches queued runs), so even
        # the first request starts fast; other processes that merely build the instance stay light.
        if os.path.basename(sys.argv[0]).startswith("dagster-daemon"):
            threading.Thread(target=self._context, name="warm-forkserver", daemon=True).start()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        from dagster import Array, Field

        return {"preload": Field(Array(str), is_required=False, description="Modules imported before forking.")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict) -> WarmForkRunLauncher:
        return cls(inst_data=inst_data, preload=config_value.get("preload"))

    def _context(self) -> Any:
        with self._lock:
            if self._ctx is None:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(self._preload)
                from multiprocessing import forkserver

                forkserver.ensure_running()  # imports PRELOAD once, in the server process
                self._ctx = ctx
            return self._ctx

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if run.job_code_origin is None:
            raise ValueError(f"run {run.run_id} has no code origin to execute")
        child = self._context().Process(
            target=_execute_run, args=(run.run_id, self._instance.get_ref()), name=f"run-{run.run_id[:8]}", daemon=False
        )
        child.start()
        self._children = {k: p for k, p in self._children.items() if p.is_alive()}
        self._children[run.run_id] = child
        tags = {PID_TAG: str(child.pid)}
        start = _start_time(child.pid)
        if start is not None:
            tags[START_TAG] = start
        self._instance.add_run_tags(run.run_id, tags)  # both at once: the health check never sees one alone
        log.info("run %s started as forked process %s", run.run_id, child.pid)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: Any) -> CheckRunHealthResult:  # DagsterRun
        """FAILED once the run's process is gone (or its PID now belongs to another process). Run workers
        live on the launching machine, where the daemon that monitors them runs too."""
        pid = run.tags.get(PID_TAG)
        if not pid:  # tagged right after the fork: nothing to judge yet
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        if _is_worker_alive(int(pid), run.tags.get(START_TAG)):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=pid)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone", run_worker_id=pid)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        pid = run.tags.get(PID_TAG) if run else None
        if not pid:
            return False
        if not _is_worker_alive(int(pid), run.tags.get(START_TAG)):
            # Gone, or its PID reused by another process (and so, after setsid, maybe its group id):
            # nothing of this run's to signal.
            log.warning("not terminating run %s: its worker process %s is gone", run_id, pid)
            return False
        self._instance.report_run_canceling(run)
        try:
            os.killpg(int(pid), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def dispose(self) -> None:
        for p in self._children.values():
            p.join(0)
