"""A small HTTP client of the REST API (what the `imgpipe` CLI uses; usable from scripts too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from image_pipeline.domain.status import FINAL_STATUSES


class ApiFailure(Exception):
    """The API refused or failed a call; `errors` holds its `{row, column, message}` problems."""

    def __init__(self, status_code: int, detail: str, errors: list[dict] | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code, self.detail, self.errors = status_code, detail, errors or []


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @staticmethod
    def _check(r: httpx.Response) -> httpx.Response:
        if r.is_success:
            return r
        try:
            body = r.json()
            detail, errors = str(body.get("detail", r.reason_phrase)), body.get("errors") or []
        except ValueError:
            detail, errors = r.text[:200] or r.reason_phrase, []
        raise ApiFailure(r.status_code, detail, errors)

    def upload(
        self, path: Path, webhook_url: str | None = None, profile: str | None = None, options: str | None = None
    ) -> dict:
        with path.open("rb") as f:
            files = {"file": (path.name, f, "text/csv")}
            fields = {"webhook_url": webhook_url, "profile": profile, "options": options}
            data = {k: v for k, v in fields.items() if v}
            return self._check(self.http.post("/api/upload", files=files, data=data)).json()

    def status(self, request_id: str) -> dict:
        return self._check(self.http.get(f"/api/status/{request_id}")).json()

    def cancel(self, request_id: str) -> dict:
        """Stop a pending or processing request; its status document (ApiFailure 409 once finished)."""
        return self._check(self.http.post(f"/api/requests/{request_id}/cancel")).json()

    def results(self, request_id: str, offset: int = 0, limit: int = 100) -> dict:
        params = {"offset": offset, "limit": limit}
        return self._check(self.http.get(f"/api/requests/{request_id}/results", params=params)).json()

    def recent(self, limit: int = 20) -> list[dict]:
        return self._check(self.http.get("/api/requests", params={"limit": limit})).json()["requests"]

    def download(self, request_id: str, out: IO[bytes]) -> int:
        """Stream the output CSV into `out`; returns the bytes written."""
        n = 0
        with self.http.stream("GET", f"/api/requests/{request_id}/output.csv") as r:
            if not r.is_success:
                r.read()
                self._check(r)
            for chunk in r.iter_bytes():
                out.write(chunk)
                n += len(chunk)
        return n

    def watch(self, request_id: str, interval: float = 1.0) -> Iterator[dict]:
        """Status documents until the request is final (the last one yielded is final)."""
        import time

        while True:
            doc = self.status(request_id)
            yield doc
            if doc["status"] in FINAL_STATUSES:
                return
            time.sleep(interval)
