"""Reconciliation: every unfinished request ends in a final state, whatever happened to its run.

The failure sensor only hears of runs that *fail*. A run can also end, or stop, without that event:
cancelled (UI terminate, run monitoring's cancel timeout, a queued run cancelled before it started),
orphaned (the code location that spawned its worker crashed: nothing is left to notice the worker is
gone, so the run stays STARTED forever), created but never submitted (NOT_STARTED), or failed with
`dagster/will_retry=true` whose retry then failed to launch (the failure sensor already stood aside).

`decide` looks at one unfinished request and its latest run and says what to do; the sensor in
`image_pipeline.defs.sensors` asks Dagster for the facts and carries the action out. The domain never
imports Dagster: a run is described here by plain values (Dagster's status names).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from image_pipeline.domain.clock import as_utc
from image_pipeline.domain.status import PENDING

# Dagster run status names (dagster.DagsterRunStatus values)
WAITING = frozenset({"QUEUED", "STARTING", "CANCELING"})  # someone else's clock runs (queue, run monitoring)
LIVE = frozenset({"NOT_STARTED", "STARTED"})  # only its own signs of life say it is alive
ENDED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

Kind = Literal["wait", "fail_run", "withdraw_retry", "relaunch", "fail_request"]


@dataclass(frozen=True)
class RunFacts:
    """What the reconciler needs to know about a request's latest run."""

    run_id: str
    status: str  # a Dagster run status name
    created_at: datetime
    ended_at: datetime | None = None
    last_event_at: datetime | None = None
    will_retry: str | None = None  # the run's dagster/will_retry tag
    retried_by: str | None = None  # dagster/auto_retry_run_id: its automatic retry was created
    retry_withdrawn_at: datetime | None = None  # this sensor took a promised retry over (runs.RETRY_WITHDRAWN_TAG)


@dataclass(frozen=True)
class Bounds:
    silence_s: float  # a live run without event or progress for this long is dead
    grace_s: float  # after a run ended, the failure sensor and run retries act first
    max_relaunches: int  # runs the reconciler itself launches per request

    @classmethod
    def from_settings(cls, s) -> Bounds:  # Settings
        return cls(s.run_silence_timeout, s.run_end_grace, s.reconcile_max_relaunches)


@dataclass(frozen=True)
class Action:
    kind: Kind
    reason: str = ""


WAIT = Action("wait")


def decide(
    request_status: str,
    request_updated_at: datetime,
    run: RunFacts | None,
    relaunches: int,
    now: datetime,
    bounds: Bounds,
) -> Action:
    """The action for one request that is not final (pending or processing) given its latest run.

    - no run: a pending request is the upload sensor's; a processing one lost its run -> relaunch/fail;
    - queued, starting, cancelling: wait (the queue and run monitoring's timeouts own these states);
    - not started / started: alive while it logs events or records progress; silent beyond
      `silence_s` -> mark the run failed (run retries and the next ticks take it from there);
    - ended, `grace_s` ago or more, and the request is still not final:
      cancelled -> fail the request; failed and no retry coming -> fail the request; failed with a
      retry promised (`dagster/will_retry=true`) that never came -> withdraw the promise, and a
      `grace_s` later, if Dagster's retry has still not appeared, relaunch (or fail); succeeded
      without finishing the request -> relaunch or fail.
    """
    if run is None:
        if request_status == PENDING or _age(now, request_updated_at) < bounds.grace_s:
            return WAIT
        return _relaunch_or_fail(relaunches, bounds, "its run is gone")
    if run.status in WAITING:
        return WAIT
    if run.status in LIVE:
        seen = max(as_utc(t) for t in (run.created_at, run.last_event_at, request_updated_at) if t is not None)
        silent = _age(now, seen)
        if silent < bounds.silence_s:
            return WAIT
        return Action(
            "fail_run",
            f"run {run.run_id} showed no sign of life for {silent:.0f} s (its code location or worker is gone)",
        )
    if run.status not in ENDED:
        return WAIT  # a status this code does not know: leave it to a human
    if _age(now, run.ended_at or run.created_at) < bounds.grace_s:
        return WAIT
    if run.status == "CANCELED":
        return Action("fail_request", "processing failed: the run was cancelled")
    if run.status == "FAILURE":
        if run.retried_by:  # Dagster created the retry, yet this run is still the latest: it was deleted
            return _relaunch_or_fail(relaunches, bounds, f"the retry of run {run.run_id} is gone")
        if run.will_retry == "true":
            # A retry was promised (so the failure sensor stood aside) and has not come. Dagster's retry
            # daemon may only be late (it was down, or its code location was): relaunching now would
            # give the request two runs. Withdraw the promise first (the retry daemon skips a run whose
            # will_retry is false) and relaunch a grace later, unless its retry showed up meanwhile.
            return Action("withdraw_retry", f"the retry of run {run.run_id} did not come: taking it over")
        if run.retry_withdrawn_at is not None:
            if _age(now, run.retry_withdrawn_at) < bounds.grace_s:
                return WAIT
            return _relaunch_or_fail(relaunches, bounds, f"the retry of run {run.run_id} was never launched")
        return Action("fail_request", f"processing failed: run {run.run_id} failed")
    return _relaunch_or_fail(relaunches, bounds, f"run {run.run_id} ended without finishing the request")


def _relaunch_or_fail(relaunches: int, bounds: Bounds, why: str) -> Action:
    if relaunches < bounds.max_relaunches:
        return Action("relaunch", why)
    return Action("fail_request", f"processing failed: {why}")


def _age(now: datetime, then: datetime) -> float:
    return (as_utc(now) - as_utc(then)).total_seconds()
