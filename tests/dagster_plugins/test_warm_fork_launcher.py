"""WarmForkRunLauncher knows a run's worker by PID *and* start time (/proc/<pid>/stat field 22), so a
PID the kernel has since given to another process is neither reported RUNNING nor signalled.

Through the real class on a real DagsterInstance (instance_for_test); the "run workers" are real
processes: one forked run, and sleeping children standing in for a worker or for a PID's new owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.launcher import LaunchRunContext, WorkerStatus

from image_pipeline.dagster_plugins import warm_fork_launcher as wf
from image_pipeline.dagster_plugins.warm_fork_launcher import PID_TAG, START_TAG


@dg.op(config_schema={"out": str})
def report_own_process(context) -> None:
    """Writes the run worker's own PID and start time, read inside it (the in-process executor)."""
    stat = Path("/proc/self/stat").read_text()
    Path(context.op_config["out"]).write_text(f"{os.getpid()} {stat.rsplit(')', 1)[1].split()[19]}")


@dg.job(executor_def=dg.in_process_executor)
def report_job() -> None:
    report_own_process()


@pytest.fixture
def instance():
    launcher = {"module": wf.__name__, "class": "WarmForkRunLauncher", "config": {"preload": ["dagster"]}}
    with dg.instance_for_test(overrides={"run_launcher": launcher}) as inst:
        assert type(inst.run_launcher).__name__ == "WarmForkRunLauncher"
        yield inst


@pytest.fixture
def sleeper():
    """A live process in its own session (as a forked run worker is, after setsid)."""
    p = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield p
    if p.poll() is None:
        p.kill()
    p.wait()


def run_config(out: str) -> dict:
    return {"ops": {"report_own_process": {"config": {"out": out}}}}


def starttime(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def run_tagged(instance, **tags: str) -> dg.DagsterRun:
    run = instance.create_run_for_job(report_job, run_config=run_config(os.devnull), tags=tags)
    return instance.get_run_by_id(run.run_id)


def health(instance, run):
    return instance.run_launcher.check_run_worker_health(run)


def test_a_launched_run_records_its_workers_pid_and_start_time(instance, tmp_path) -> None:
    out = tmp_path / "worker.txt"
    run = instance.create_run_for_job(
        report_job,
        run_config=run_config(str(out)),
        job_code_origin=dg.reconstructable(report_job).get_python_origin(),
    )
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    tags = instance.get_run_by_id(run.run_id).tags
    deadline = time.monotonic() + 120
    while not instance.get_run_by_id(run.run_id).is_finished:
        assert time.monotonic() < deadline, "the forked run did not finish"
        time.sleep(0.2)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    pid, start = out.read_text().split()
    assert (tags[PID_TAG], tags[START_TAG]) == (pid, start)  # what the worker itself saw
    # Once the worker has exited (a zombie until the forkserver reaps it, then gone): FAILED.
    while health(instance, instance.get_run_by_id(run.run_id)).status != WorkerStatus.FAILED:
        assert time.monotonic() < deadline, "an exited worker still counts as running"
        time.sleep(0.2)


def test_health_running_for_the_launched_process(instance, sleeper) -> None:
    run = run_tagged(instance, **{PID_TAG: str(sleeper.pid), START_TAG: str(starttime(sleeper.pid))})
    got = health(instance, run)
    assert got.status == WorkerStatus.RUNNING and got.run_worker_id == str(sleeper.pid)


@pytest.mark.parametrize("whose", ["sleeper", "this test process"])
def test_health_failed_when_the_pid_now_belongs_to_another_process(instance, sleeper, whose) -> None:
    """The PID is alive, but its start time is not the worker's: the kernel reused the PID."""
    pid = sleeper.pid if whose == "sleeper" else os.getpid()
    run = run_tagged(instance, **{PID_TAG: str(pid), START_TAG: str(starttime(pid) - 1)})
    got = health(instance, run)
    assert got.status == WorkerStatus.FAILED and got.msg == f"run worker process {pid} is gone"


def test_health_failed_for_a_pid_without_recorded_start_time(instance, sleeper) -> None:
    """Tagged before start times were recorded: its forkserver (and so its worker) has gone since."""
    assert health(instance, run_tagged(instance, **{PID_TAG: str(sleeper.pid)})).status == WorkerStatus.FAILED


def test_health_failed_for_a_zombie_and_for_a_reaped_pid(instance) -> None:
    p = subprocess.Popen(["true"])
    start = starttime(p.pid)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run = run_tagged(instance, **{PID_TAG: str(p.pid), START_TAG: str(start)})
    assert health(instance, run).status == WorkerStatus.FAILED  # zombie, start time matching
    p.wait()
    got = health(instance, run)
    assert got.status == WorkerStatus.FAILED and got.msg == f"run worker process {p.pid} is gone"


def test_start_time_is_read_after_the_last_parenthesis(instance) -> None:
    """The command name (field 2) may hold spaces and parentheses; fields are counted after its ')'."""
    comm = "x) 1 2 (3"
    code = f"import ctypes, time; ctypes.CDLL(None).prctl(15, {comm.encode()!r}, 0, 0, 0); time.sleep(300)"
    p = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while Path(f"/proc/{p.pid}/comm").read_text().strip() != comm:
            assert time.monotonic() < deadline, "prctl(PR_SET_NAME) did not take"
            time.sleep(0.05)
        stat = Path(f"/proc/{p.pid}/stat").read_text()
        expected = stat.split(f"({comm}) ", 1)[1].split()[19]
        state, start = wf._proc_stat(p.pid)
        assert state in ("R", "S") and start == int(expected)
        run = run_tagged(instance, **{PID_TAG: str(p.pid), START_TAG: expected})
        assert health(instance, run).status == WorkerStatus.RUNNING
    finally:
        p.kill()
        p.wait()


def test_terminate_refuses_a_reused_pid(instance, sleeper) -> None:
    run = run_tagged(instance, **{PID_TAG: str(sleeper.pid), START_TAG: str(starttime(sleeper.pid) + 1)})
    assert instance.run_launcher.terminate(run.run_id) is False
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(1)  # not signalled (SIGTERM would end `sleep` at once)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.NOT_STARTED  # not CANCELING


def test_terminate_signals_the_launched_process(instance, sleeper) -> None:
    run = run_tagged(instance, **{PID_TAG: str(sleeper.pid), START_TAG: str(starttime(sleeper.pid))})
    assert instance.run_launcher.terminate(run.run_id) is True
    assert sleeper.wait(60) == -signal.SIGTERM
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELING


def test_without_proc_only_the_pid_is_checked(instance, sleeper, monkeypatch, tmp_path) -> None:
    """Not Linux (no /proc): no start time is recorded, and kill(pid, 0) decides."""

    monkeypatch.setattr(wf, "PROC", str(tmp_path / "no-proc"))
    assert wf._start_time(sleeper.pid) is None
    assert health(instance, run_tagged(instance, **{PID_TAG: str(sleeper.pid)})).status == WorkerStatus.RUNNING
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert health(instance, run_tagged(instance, **{PID_TAG: str(gone.pid)})).status == WorkerStatus.FAILED
