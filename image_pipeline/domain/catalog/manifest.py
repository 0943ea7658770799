"""The request's JSON manifest: per URL and rendition, what was made (URL, format, size, bytes, quality,
score: SSIMULACRA2 on the scored sample, else null; status). Written beside the output CSV, streamed
like it (one URL in memory at a time), and served at `GET /api/requests/{id}/manifest.json`."""

from __future__ import annotations

import json
from collections.abc import Callable

from image_pipeline.domain.profiles import Profile


class ManifestWriter:
    """`add` each URL's manifest line (in input order) between `start` and `finish`."""

    def __init__(
        self,
        write: Callable[[bytes], object],
        public_url: Callable[[str], str],
        profile: Profile | None,
        seed_quality: int,
        flush_bytes: int = 1 << 16,
    ) -> None:
        self.write, self.public_url, self.profile, self.seed_quality = write, public_url, profile, seed_quality
        self.flush_bytes = flush_bytes
        self._buf: list[str] = []
        self._size = 0
        self._first = True
        self.names = [r.name for r in profile.renditions] if profile else ["image"]

    def start(self, request_id: str) -> None:
        head = {
            "request_id": request_id,
            "profile": json.loads(self.profile.canonical_json()) if self.profile else {"name": "default"},
        }
        self._emit(json.dumps(head)[:-1] + ', "urls": [')

    def add(self, r: dict) -> None:
        """`r` is a chunk manifest line (a `UrlResult` as a dict)."""
        item = {"idx": r["idx"], "row": r["row"], "url": r["url"], "status": r["status"], "error": r["error"],
                "failure_class": r.get("failure_class")}  # fmt: skip
        item["renditions"] = self._renditions(r)
        self._emit(("" if self._first else ",") + json.dumps(item))
        self._first = False

    def _renditions(self, r: dict) -> list[dict]:
        if r.get("renditions"):
            return [
                {**{k: v for k, v in m.items() if k != "key"}, "url": self.public_url(m["key"]), "status": "done"}
                for m in r["renditions"]
            ]
        if r["status"] == "done" and r["output_key"]:
            return [
                {"name": "image", "url": self.public_url(r["output_key"]), "format": "jpeg", "width": r["width"],
                 "height": r["height"], "bytes": r["bytes_out"], "quality": self.seed_quality,
                 "kept_original": r["kept_original"], "score": r.get("score"), "status": "done"}
            ]  # fmt: skip
        return [{"name": name, "url": None, "status": "failed"} for name in self.names]

    def finish(self) -> None:
        self._emit("]}")
        self._flush()

    def _emit(self, text: str) -> None:
        self._buf.append(text)
        self._size += len(text)
        if self._size >= self.flush_bytes:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self.write("".join(self._buf).encode())
            self._buf, self._size = [], 0
