"""Canceling a request (`POST /api/requests/{id}/cancel`): its owner stops it while pending or processing.

The request becomes `canceled` and its one `request.canceled` event is queued in the same transaction
(the outbox: never lost between the two). Its runs are then terminated through the Dagster webserver's
GraphQL API (`terminateRun`: a queued run leaves the queue, a started one is interrupted), so the API
never imports Dagster. Whatever a run does after that, the run itself stops too: each step asks first
(`RequestContext.stop_if_canceled`), a chunk takes no further URL once a progress write finds the
request canceled, and the final status of a canceled request is never overwritten. Outputs already
stored stay stored and listed in the per-URL results.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from image_pipeline.domain.db import requests as repo
from image_pipeline.domain.db.models import ImageRequest
from image_pipeline.domain.objects import ObjectStore
from image_pipeline.domain.request.fast_launch import FastLauncher, LaunchError
from image_pipeline.domain.runs import REQUEST_ID_TAG
from image_pipeline.domain.status import CANCELED
from image_pipeline.domain.webhooks.events import EventLimits
from image_pipeline.domain.webhooks.outbox import enqueue_final_event

log = logging.getLogger("imgpipe.cancel")

CANCEL_REASON = "canceled by its owner"


class CancelRefused(Exception):
    """The request already finished (completed, partially failed, failed); the message is user-facing."""


@dataclass(frozen=True)
class Canceled:
    request: ImageRequest
    changed: bool  # False: it was canceled before (a repeated cancel changes nothing)


def cancel_request(
    session: Session, store: ObjectStore, request_id: str, api_base_url: str, limits: EventLimits | None = None
) -> Canceled:
    """Mark the request canceled and queue its `request.canceled` event, in one transaction.

    Raises CancelRefused for a finished request. A request canceled before is answered as it is.
    """
    changed = repo.cancel(session, request_id, CANCEL_REASON)
    session.expire_all()  # the caller may have loaded the request before: read it as it is now
    if changed:
        # Commits the cancel with the event. The claim of the final event is one conditional UPDATE, so a
        # run ending at this moment either finds the request final and queues nothing, or (it queued its
        # own event first) makes this claim fail, which rolls the cancel back: then it is refused below.
        enqueue_final_event(session, store, request_id, api_base_url, limits)
    else:
        session.rollback()
    req = repo.get_request(session, request_id)
    if req is None:
        raise CancelRefused(f"request {request_id} is gone")
    session.refresh(req)
    if req.status != CANCELED:
        raise CancelRefused(f"request is {req.status}; only a pending or processing request can be canceled")
    return Canceled(req, changed=changed)


_ACTIVE_RUNS = """
query ImgpipeActiveRuns($tag: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $tag, value: $value}],
                       statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, MANAGED]}) {
    __typename
    ... on Runs { results { runId status } }
    ... on Error { message }
  }
}
"""

_TERMINATE_RUN = """
mutation ImgpipeTerminateRun($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
  }
}
"""


async def terminate_runs(launcher: FastLauncher, request_id: str) -> list[str]:
    """Terminate every run of the request that has not ended, through the webserver; the ids terminated.

    Never raises: a run that could not be reached stops by itself at its next check of the request.
    """
    try:
        data = (await launcher.graphql(_ACTIVE_RUNS, {"tag": REQUEST_ID_TAG, "value": request_id}))["runsOrError"]
        if data["__typename"] != "Runs":
            raise LaunchError(f"cannot look runs up: {data.get('message')}")
        stopped = []
        for run in data["results"]:
            res = (await launcher.graphql(_TERMINATE_RUN, {"runId": run["runId"]}, idempotent=False))["terminateRun"]
            if res["__typename"] == "TerminateRunSuccess":
                stopped.append(run["runId"])
            else:
                log.warning("cancel %s: run %s not terminated: %s", request_id, run["runId"], res.get("message"))
        return stopped
    except Exception as exc:  # the run's own checks stop it
        log.warning("cancel %s: could not terminate its runs through Dagster: %s", request_id, exc)
        return []
