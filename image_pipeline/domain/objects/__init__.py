"""Object storage behind one protocol: S3 (AWS, MinIO, any S3-compatible endpoint) or, on the embedded
default, a directory (`local`). Keys are deterministic (`image_pipeline.domain.keys`), so re-running a
request overwrites rather than duplicates."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Protocol


class ObjectNotFound(KeyError):
    """The object does not exist."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the store's root (`..`, absolute paths, empty parts)."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"invalid object key: {key!r}")
    return key


class ObjectWriter(Protocol):
    """An object written piece by piece (`with store.open_writer(key) as w: w.write(...)`): it appears,
    whole, when the block ends without an exception; on an exception nothing is stored and nothing is
    left behind (no temp file, no multipart parts)."""

    def write(self, data: bytes) -> int: ...
    def __enter__(self) -> ObjectWriter: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class ObjectStore(Protocol):
    public_base_url: str

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...
    def open_writer(self, key: str, content_type: str = "application/octet-stream") -> ObjectWriter: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def delete(self, key: str) -> None: ...  # no error when it is not there
    def delete_prefix(self, prefix: str) -> int: ...
    def iter_chunks(self, key: str, chunk_size: int = 1 << 16) -> Iterator[bytes]: ...

    def public_url(self, key: str) -> str: ...

    def ping(self) -> None: ...  # raises when the store cannot be reached or used (readiness probe)
