"""Objects as files under a directory (the embedded default): atomic writes (temp file + rename)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from image_pipeline.domain.objects import ObjectNotFound, check_key


class LocalStore:
    """Objects as files under `root`; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path, public_base_url: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.public_base_url = public_base_url.rstrip("/")

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self.open_writer(key, content_type) as w:  # temp file + rename: readers never see half an object
            w.write(data)

    def open_writer(self, key: str, content_type: str = "application/octet-stream") -> LocalWriter:
        """Written incrementally to a temp file next to the object, renamed into place at the end."""
        return LocalWriter(self._path(key))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        base = self.root / check_key(prefix.rstrip("/"))
        n = 0
        if base.is_dir():
            for p in sorted(base.rglob("*"), reverse=True):
                if p.is_file():
                    p.unlink()
                    n += 1
                else:
                    p.rmdir()
            base.rmdir()
        return n

    def iter_chunks(self, key: str, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        try:
            f = self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        with f:
            while chunk := f.read(chunk_size):
                yield chunk

    def ping(self) -> None:
        """The objects directory is there and this process may write into it."""
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise OSError(f"objects directory {self.root} is missing or not writable")

    def public_url(self, key: str) -> str:
        return f"{self.public_base_url}/{check_key(key)}"


class LocalWriter:
    """An object file written as it is produced, atomically: a temp file next to it, renamed into place
    when the block ends without an exception, removed otherwise (also `LocalStore.put`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def __enter__(self) -> LocalWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._file.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            Path(self._tmp).unlink(missing_ok=True)  # gone already after the rename
