"""Fast path: the API starts a request's run itself, right after answering 202, instead of waiting for
the upload sensor (whose daemon loop ticks every 5 s at best).

It speaks GraphQL to the Dagster webserver over HTTP (`addDynamicPartition`, then `launchRun`), so the
API never imports Dagster. The run carries the same tags the sensor would give it, including
`dagster/run_key` = request_id and `dagster/sensor_name` = upload_sensor, so a later sensor tick that
still sees the request pending skips it by Dagster's own run-key check.

Exactly one run per request: before launching, the fast path and the sensor each claim the request in
the app database (`db.requests.claim_launches`, one atomic UPDATE). Only the winner launches. A
failed launch releases its claim, and a claim left by a crashed launcher goes stale after
`IMGPIPE_LAUNCH_CLAIM_TIMEOUT` seconds; either way the sensor then launches it, so the fast path may
fail without losing anything.

`launchRun` is not idempotent (the webserver creates a new run each time it is asked), so it is sent
again only when the first one provably never reached the server (the connection was never made).
Any other failure after sending it (a read timeout, a dropped connection, a 5xx from a proxy, a
PythonError) leaves the outcome unknown: the run may exist. Then the fast path looks the run up by
the request's tag; if it is not (yet) there, it keeps its claim instead of releasing it, so the sensor
takes over only after the claim timeout, when Dagster's run-key check (the fast path's run carries
`dagster/run_key` = request_id) sees the run that the slow reply had created. The idempotent calls
(repository query, addDynamicPartition) are retried on any transport error.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from image_pipeline.domain.db import requests as repo
from image_pipeline.domain.runs import JOB_NAME, PARTITIONS_DEF_NAME, SENSOR_NAME, TRACEPARENT_TAG, fast_path_tags
from image_pipeline.domain.telemetry import tracing

if TYPE_CHECKING:
    from image_pipeline.domain.settings import Settings

log = logging.getLogger("imgpipe.launch")


class LaunchError(Exception):
    """The webserver refused or could not be reached; the sensor will launch the run instead."""


class WebserverUnreachable(LaunchError):
    """No answer at all (e.g. the webserver is still starting): worth a few retries."""


class LaunchOutcomeUnknown(LaunchError):
    """`launchRun` was sent but no definite answer came back: the run may or may not exist."""


@dataclass(frozen=True)
class RepoSelector:
    location: str
    repository: str


_REPOS_QUERY = """
query ImgpipeRepos {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
    ... on Error { message }
  }
}
"""

_ADD_PARTITION = """
mutation ImgpipeAddPartition($repo: RepositorySelector!, $def: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: $def, partitionKey: $key) {
    __typename
    ... on Error { message }
  }
}
"""

_RUNS_OF_REQUEST = """
query ImgpipeRunsOfRequest($key: String!, $sensor: String!) {
  runsOrError(filter: {tags: [{key: "dagster/run_key", value: $key}, {key: "dagster/sensor_name", value: $sensor}]}) {
    __typename
    ... on Runs { results { runId } }
    ... on Error { message }
  }
}
"""

_LAUNCH_RUN = """
mutation ImgpipeLaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""


class FastLauncher:
    """Claims and launches runs through the Dagster webserver's GraphQL API. One per API process."""

    def __init__(
        self,
        dagster_url: str,
        sessions: sessionmaker[Session],
        *,
        claim_timeout_s: float = 60.0,
        http_timeout_s: float = 10.0,
        unreachable_retry_s: float = 15.0,
        settings: Settings | None = None,
    ) -> None:
        import httpx

        self.settings = settings  # the run's limits (its maximum runtime), as the sensor would set them

        self.graphql_url = dagster_url.rstrip("/") + "/graphql"
        self.sessions = sessions
        self.claim_timeout_s = claim_timeout_s
        # How long to keep retrying while the webserver does not answer (it starts after the API under
        # `make up`); kept well under the claim timeout so the sensor never waits on a live claim for long.
        self.unreachable_retry_s = min(unreachable_retry_s, claim_timeout_s / 2)
        self._client = httpx.AsyncClient(timeout=http_timeout_s)
        self._repo: RepoSelector | None = None
        self._repo_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _graphql(self, query: str, variables: dict | None = None, *, idempotent: bool = True) -> dict:
        """POST one GraphQL document. For a call that is not idempotent (`launchRun`), only a failure
        that proves the request never reached the server is `WebserverUnreachable` (retryable); any
        other failure after sending is `LaunchOutcomeUnknown`."""
        import httpx

        try:
            r = await self._client.post(self.graphql_url, json={"query": query, "variables": variables or {}})
        except httpx.TransportError as exc:
            never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            if idempotent or never_sent:
                raise WebserverUnreachable(f"Dagster webserver unreachable at {self.graphql_url}: {exc}") from exc
            raise LaunchOutcomeUnknown(f"no answer from {self.graphql_url} after sending: {exc!r}") from exc
        if r.status_code != 200:
            cls = LaunchError if idempotent or r.status_code < 500 else LaunchOutcomeUnknown
            raise cls(f"Dagster webserver answered HTTP {r.status_code}: {r.text[:300]}")
        body = r.json()
        if body.get("errors"):
            raise LaunchError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    async def graphql(self, query: str, variables: dict | None = None, *, idempotent: bool = True) -> dict:
        """One GraphQL document to the webserver (other callers of its API, e.g. `request.cancel`)."""
        return await self._graphql(query, variables, idempotent=idempotent)

    async def repository(self) -> RepoSelector:
        """The code location and repository that hold the request job (looked up once, then kept)."""
        async with self._repo_lock:
            if self._repo is None:
                data = (await self._graphql(_REPOS_QUERY))["repositoriesOrError"]
                if data["__typename"] != "RepositoryConnection":
                    raise LaunchError(f"cannot list repositories: {data.get('message')}")
                for node in data["nodes"]:
                    if any(j["name"] == JOB_NAME for j in node["jobs"]):
                        self._repo = RepoSelector(node["location"]["name"], node["name"])
                        break
                else:
                    raise LaunchError(f"no code location on the webserver defines {JOB_NAME}")
            return self._repo

    async def launch_run(self, request_id: str, owner: str, rows: int, urls: int) -> str:
        """Add the request's partition and launch its run (no claim: see `claim_and_launch`)."""
        sel = await self.repository()
        repo_sel = {"repositoryLocationName": sel.location, "repositoryName": sel.repository}
        added = (
            await self._graphql(_ADD_PARTITION, {"repo": repo_sel, "def": PARTITIONS_DEF_NAME, "key": request_id})
        )["addDynamicPartition"]
        if added["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise LaunchError(f"addDynamicPartition: {added['__typename']}: {added.get('message')}")
        tags = fast_path_tags(request_id, owner, rows, urls, self.settings)
        if parent := tracing.traceparent():  # the upload's span (this runs in its context): the run joins its trace
            tags[TRACEPARENT_TAG] = parent
        params = {
            "selector": {**repo_sel, "jobName": JOB_NAME},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        res = (await self._graphql(_LAUNCH_RUN, {"params": params}, idempotent=False))["launchRun"]
        if res["__typename"] != "LaunchRunSuccess":
            detail = res.get("message") or res.get("errors")
            # A PythonError may come after the run was created (e.g. while submitting it to the queue).
            cls = LaunchOutcomeUnknown if res["__typename"] == "PythonError" else LaunchError
            raise cls(f"launchRun: {res['__typename']}: {detail}")
        return res["run"]["runId"]

    async def find_run(self, request_id: str) -> str | None:
        """The id of the run the fast path launched for this request, if the webserver has it."""
        data = (await self._graphql(_RUNS_OF_REQUEST, {"key": request_id, "sensor": SENSOR_NAME}))["runsOrError"]
        if data["__typename"] != "Runs":
            raise LaunchError(f"cannot look runs up: {data.get('message')}")
        results = data["results"]
        return results[0]["runId"] if results else None

    async def _launch_with_retry(self, request_id: str, owner: str, rows: int, urls: int) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.unreachable_retry_s
        delay = 0.25
        while True:
            try:
                return await self.launch_run(request_id, owner, rows, urls)
            except WebserverUnreachable:
                if loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def claim(self, request_id: str) -> bool:
        with self.sessions() as s:
            return bool(repo.claim_launches(s, [request_id], self.claim_timeout_s))

    def release(self, request_id: str) -> None:
        with self.sessions() as s:
            repo.release_launch(s, request_id)

    async def claim_and_launch(self, request_id: str, owner: str, rows: int, urls: int) -> str | None:
        """Launch the request's run if this caller wins the claim; the run id, or None if not launched.

        Never raises: a failure is logged, the claim released, and the sensor launches the run instead.
        """
        try:
            if not await asyncio.to_thread(self.claim, request_id):
                return None
        except Exception:  # the sensor is the safety net
            log.exception("fast path: could not claim request %s; leaving it to the sensor", request_id)
            return None
        try:
            run_id = await self._launch_with_retry(request_id, owner, rows, urls)
        except LaunchOutcomeUnknown as exc:
            return await self._settle_unknown(request_id, exc)
        except Exception as exc:
            log.warning("fast path: launch of request %s failed (%s); the sensor will launch it", request_id, exc)
            try:
                await asyncio.to_thread(self.release, request_id)
            except Exception:  # a stale claim is re-offered after the timeout anyway
                log.exception("fast path: could not release the claim of request %s", request_id)
            return None
        log.info("fast path: request %s launched as run %s", request_id, run_id)
        return run_id

    async def _settle_unknown(self, request_id: str, exc: Exception) -> str | None:
        """`launchRun` may have created the run: find it, or keep the claim (never launch again here).

        The claim is not released, so nobody launches before it goes stale (`claim_timeout_s`); by then
        the slow reply has created its run or not, and the upload sensor's run-key check decides.
        """
        try:
            run_id = await self.find_run(request_id)
        except Exception as lookup_exc:
            log.warning("fast path: looking up the run of request %s failed: %s", request_id, lookup_exc)
            run_id = None
        if run_id:
            log.info("fast path: request %s launched as run %s (found after: %s)", request_id, run_id, exc)
            return run_id
        log.warning(
            "fast path: launch of request %s has an unknown outcome (%s); keeping the claim: the sensor "
            "takes over after %.0f s and launches it only if no run exists",
            request_id,
            exc,
            self.claim_timeout_s,
        )
        return None
