"""Webhook host lookups at upload, bounded per tenant (API key).

`getaddrinfo` cannot be cancelled: a timeout frees the await, not the thread. Run in the event loop's
default executor (a handful of threads, shared with everything else that uses it), a black-holed
webhook host lets one key fill that pool with stuck lookups, and every other key's webhook uploads
(and the health check) queue behind them. Here each lookup gets a thread of its own, counted against
its key until the lookup really ends: a key with `per_key` lookups still running is refused at once
(a 422 naming webhook_url), as is everyone once `total` are running, so stuck lookups stay bounded and
another key's are never queued behind them.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import threading

from image_pipeline.domain.images.url_policy import FetchError, Resolver


class TenantResolver:
    def __init__(self, per_key: int, total: int) -> None:
        self.per_key, self.total = per_key, total
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._all = 0

    def running(self, owner: str) -> int:
        with self._lock:
            return self._running.get(owner, 0)

    def for_owner(self, owner: str) -> Resolver:
        """A resolver (for `check_url`) whose lookups count against `owner`."""
        return functools.partial(self.resolve, owner)

    def _release(self, owner: str) -> None:
        with self._lock:
            self._all -= 1
            left = self._running[owner] - 1
            if left:
                self._running[owner] = left
            else:
                del self._running[owner]

    async def resolve(self, owner: str, host: str, port: int) -> list[str]:
        try:  # a dotted-quad literal resolves to itself
            return [str(ipaddress.IPv4Address(host))]
        except ValueError:
            pass
        with self._lock:
            if self._running.get(owner, 0) >= self.per_key or self._all >= self.total:
                raise FetchError(
                    "too many webhook host lookups of this key are still unanswered; try again later"
                    if self._running.get(owner, 0) >= self.per_key
                    else "too many webhook host lookups are unanswered; try again later"
                )
            self._running[owner] = self._running.get(owner, 0) + 1
            self._all += 1
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()

        def settle(result: list | None, error: BaseException | None) -> None:
            if not answer.done():  # the caller may have timed out and gone
                if error is None:
                    answer.set_result(result)
                else:
                    answer.set_exception(error)

        def lookup() -> None:
            result, error = None, None
            try:
                result = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except BaseException as exc:
                error = exc
            finally:
                self._release(owner)
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the loop is closed: nobody is waiting
                pass

        threading.Thread(target=lookup, name="imgpipe-webhook-dns", daemon=True).start()
        try:
            infos = await answer
        except socket.gaierror as exc:
            raise FetchError(f"cannot resolve host {host!r}: {exc.strerror or exc}") from exc
        except (UnicodeError, ValueError) as exc:
            raise FetchError(f"cannot resolve host {host!r}: malformed host name") from exc
        return list(dict.fromkeys(info[4][0] for info in infos))
