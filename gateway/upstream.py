"""Upstream pools: which member gets this request, and what happens when it fails.

On the request's journey this is the last stop inside the gateway: proxy.py has decided the
route and built the upstream request; `UpstreamPool.forward` picks a member, sends it over
a pooled keep-alive connection (the shared HTTP client, through a `Transport`), and
retries on another member when that is safe.

Picking: round robin over the members that are usable — healthy per the active health
check (if the pool has one) and not passively ejected. A member whose connect fails is
ejected for `PASSIVE_EJECT_S` (nginx's `max_fails=1 fail_timeout`); when *no* member is
usable we try them all anyway, because a checker that sees the whole fleet down is more
likely wrong than the fleet (Envoy's panic threshold, AWS's fail-open).

Retrying (the `retries` setting bounds how many extra attempts):

    failure                               retried?
    ------------------------------------  --------------------------------------------
    connect refused / connect timeout     yes, any method: nothing reached the upstream
                                          (if all fail: 502, or 504 when the last timed out)
    connection dropped before a response  only idempotent methods (GET, HEAD, PUT, …):
                                          the upstream may have acted on a POST already
    response timeout                      no: the upstream is slow, more load won't help
    any response, even 5xx                no: it is the upstream's answer

`forward_now` makes the first attempt from callbacks when the breaker is closed and the
member has a warm connection free (the gateway's usual request); a failed attempt that may
be retried continues in `forward`, so both ways retry and count alike.

Every attempt runs inside the request's *total* timeout, so retries never stretch a
request beyond what the client was promised. Results feed the pool's circuit breaker
(breaker.py): transport failures and 502/503/504 count as failures.

Simpler than the real thing: no retry budgets or back-off (Envoy), no slow start, no
weights; health checks are plain `GET health_path` expecting 2xx.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from minisys.http.client import BadResponse, ClientError, ClientTimeout, ConnectError, HttpClient

from .breaker import CLOSED, CircuitBreaker
from .config import Upstream

# Seconds a member sits out after a failed connect before real traffic tries it again.
PASSIVE_EJECT_S = 5.0
# Active checks: consecutive results needed to change state (HAProxy's rise/fall defaults
# are 2 and 3).
RISE = 2
FALL = 3

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
BREAKER_STATUSES = frozenset({502, 503, 504})


class ConnectFailed(Exception):
    """Could not open a connection to the member (refused, unreachable, timed out).

    `timed_out` tells a silent member (504, as nginx answers a connect timeout) from one
    that refused at once (502).
    """

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class UpstreamReset(Exception):
    """The connection broke after the request was (maybe) sent, before a full response."""


class UpstreamTimeout(Exception):
    """No complete response within the read or total timeout."""


class NoMember(Exception):
    """The breaker is open: fail fast without touching the upstream."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("circuit open")
        self.retry_after = retry_after


class Transport(Protocol):
    """Sends one request to one member (implemented over minisys.http.client in proxy.py)."""

    async def send(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: list | bytes,
        body: bytes,
        timeout: float,
    ) -> Any:
        """The response, or raise ConnectFailed / UpstreamReset / UpstreamTimeout.

        `timeout` bounds the whole attempt (connect + write + read). `headers` may instead
        be the whole request already serialized (bytes, from hot.py; `target` and `body`
        are then unused).
        """


class HttpTransport:
    """The real Transport: the shared pooled keep-alive client, errors mapped to ours.

    One client per upstream pool, so each pool has its own timeouts and connection cap.
    """

    def __init__(self, settings: Upstream) -> None:
        self.client = HttpClient(
            pool_size_per_origin=max(1, settings.pool_size),
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            total_timeout=settings.total_timeout,
        )

    async def send(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: list | bytes,
        body: bytes,
        timeout: float,
    ) -> Any:
        try:
            if type(headers) is bytes:  # the whole request, serialized by hot.py
                return await self.client.request_data(
                    method, (host, port), headers, timeout=timeout
                )
            return await self.client.request(
                method, (host, port, target), headers, body, timeout=timeout
            )
        except ClientError as exc:
            raise _mapped(exc) from None

    def send_now(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: list,
        body: bytes,
        timeout: float,
        then: Callable[[Any, Exception | None], None],
    ) -> Callable[[], None] | None:
        """`send` through the client's callback fast path (`HttpClient.request_now`): the
        canceller, or None when no warm connection is free (then use `send`)."""

        def done(response: Any, exc: Exception | None) -> None:
            then(response, None if exc is None else _mapped(exc))

        return self.client.request_now(
            method, (host, port, target), headers, body, done, timeout=timeout
        )

    async def close(self) -> None:
        await self.client.close()


def _mapped(exc: Exception) -> Exception:
    """The client's error as the pool's: ConnectFailed, UpstreamTimeout or UpstreamReset."""
    if isinstance(exc, ConnectError):
        # The client raises ConnectError from inside `except TimeoutError` on a connect
        # timeout, so the timeout is still its __context__.
        return ConnectFailed(str(exc), isinstance(exc.__context__, TimeoutError))
    if isinstance(exc, ClientTimeout):
        return UpstreamTimeout(str(exc))
    if isinstance(exc, (BadResponse, ClientError)):
        return UpstreamReset(str(exc))
    return exc


@dataclass
class Member:
    host: str
    port: int
    healthy: bool = True  # as judged by active checks
    ejected_until: float = 0.0  # passive ejection after a connect failure
    rise: int = 0
    fall: int = 0
    active: int = 0  # requests in flight
    requests: int = 0
    failures: int = 0
    last_error: str = ""
    name: str = field(init=False)  # "host:port", made once: logs and metrics use it per request

    def __post_init__(self) -> None:
        self.name = f"{self.host}:{self.port}"

    def usable(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until

    def check_result(self, ok: bool) -> None:
        """Feed one active health check result (rise/fall hysteresis)."""
        if ok:
            self.fall = 0
            self.rise += 1
            if not self.healthy and self.rise >= RISE:
                self.healthy = True
        else:
            self.rise = 0
            self.fall += 1
            if self.healthy and self.fall >= FALL:
                self.healthy = False


@dataclass
class Attempt:
    member: str
    outcome: str  # "ok", "connect", "reset", "timeout"


@dataclass
class Forwarded:
    """The upstream's response and the story of how we got it (for logs and metrics)."""

    response: Any
    member: Member
    attempts: list[Attempt] = field(default_factory=list)


class UpstreamPool:
    def __init__(
        self, settings: Upstream, transport: Transport, clock: Any = time.monotonic
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.transport = transport
        self.clock = clock
        self.members = [Member(host, port) for host, port in settings.members]
        self.breaker = CircuitBreaker(settings.breaker)
        self._next = 0

    def pick(self, now: float, exclude: set[int]) -> int | None:
        """Index of the next member by round robin, skipping `exclude` and unusable ones.

        Walks the ring once from where the last pick left off; the first usable member
        wins. If none is usable, the first not-yet-tried one does (the fail-open rule).
        """
        members = self.members
        n = len(members)
        fallback = None
        for step in range(n):
            i = (self._next + step) % n
            if i in exclude:
                continue
            if members[i].usable(now):
                self._next = i + 1
                return i
            if fallback is None:
                fallback = i
        if fallback is not None:
            self._next = fallback + 1
        return fallback

    async def forward(
        self,
        method: str,
        target: str,
        headers: list | bytes,
        body: bytes,
        resume: tuple[float, set[int], list[Attempt], Exception] | None = None,
    ) -> Forwarded:
        """Send the request, retrying as the table in the module docstring says.

        Raises NoMember (breaker open), ConnectFailed, UpstreamReset or UpstreamTimeout
        when every allowed attempt failed. `resume` (deadline, members tried, attempts,
        last error) continues after a first attempt made by `forward_now`. `headers` may
        be the whole serialized request (see `Transport.send`).
        """
        s = self.settings
        if resume is None:
            now = self.clock()
            if not self.breaker.allow(now):
                raise NoMember(self.breaker.retry_after(now))
            deadline = now + s.total_timeout
            tried: set[int] = set()
            attempts: list[Attempt] = []
            error: Exception | None = None
        else:
            deadline, tried, attempts, error = resume
        while len(attempts) <= s.retries:
            index = self.pick(self.clock(), tried)
            if index is None:
                break
            tried.add(index)
            member = self.members[index]
            remaining = deadline - self.clock()
            if remaining <= 0:
                error = UpstreamTimeout("total timeout")
                break
            member.active += 1
            member.requests += 1
            try:
                # One timer per attempt (inside the client): the read timeout, cut short by
                # what is left of the total.
                response = await self.transport.send(
                    member.host, member.port, method, target, headers, body,
                    min(remaining, s.read_timeout),
                )  # fmt: skip
            except (ConnectFailed, UpstreamReset, UpstreamTimeout) as exc:
                error = exc
                if self.failed(member, exc, method, attempts):
                    continue
                break
            finally:
                member.active -= 1
            return self.succeeded(member, response, attempts)
        self.breaker.record(False, self.clock())
        assert error is not None
        error.attempts = attempts  # type: ignore[attr-defined]
        raise error

    def failed(self, member: Member, exc: Exception, method: str, attempts: list) -> bool:
        """Account one failed attempt; True if another member may be tried."""
        outcome = _outcome(exc)
        attempts.append(Attempt(member.name, outcome))
        member.failures += 1
        member.last_error = f"{outcome}: {exc}"
        if isinstance(exc, ConnectFailed):
            member.ejected_until = self.clock() + PASSIVE_EJECT_S
            return True
        return isinstance(exc, UpstreamReset) and method in IDEMPOTENT

    def succeeded(self, member: Member, response: Any, attempts: list) -> Forwarded:
        attempts.append(Attempt(member.name, "ok"))
        self.breaker.record(response.status not in BREAKER_STATUSES, self.clock())
        return Forwarded(response, member, attempts)

    def forward_now(
        self,
        method: str,
        target: str,
        headers: list,
        body: bytes,
        then: Callable[[Forwarded | None, Exception | None], None],
    ) -> Callable[[], None] | None:
        """`forward` from callbacks, for the common case: breaker closed and the member
        picked has a warm connection free (`Transport.send_now`). Returns a canceller, or
        None with nothing sent (then use `forward`). `then(forwarded, None)` or
        `then(None, error)` gets what `forward` would have returned or raised; a failed
        first attempt that may be retried continues in `forward` (a Task: the rare path).
        """
        send_now = getattr(self.transport, "send_now", None)
        if send_now is None or self.breaker.state != CLOSED:
            return None  # half-open probes and fail-fast 503s take the general path
        now = self.clock()
        ring_position = self._next
        index = self.pick(now, _NONE_TRIED)
        if index is None:
            return None
        member = self.members[index]
        s = self.settings
        attempt = _Forwarding(self, index, method, target, headers, body, now + s.total_timeout)
        attempt.then = then
        member.active += 1
        cancel = send_now(
            member.host, member.port, method, target, headers, body,
            min(s.total_timeout, s.read_timeout), attempt.done,
        )  # fmt: skip
        if cancel is None:
            member.active -= 1
            self._next = ring_position  # the general path picks this member again
            return None
        member.requests += 1
        attempt.cancel_send = cancel
        return attempt.cancel

    async def check_health(self) -> None:
        """One round of active checks (`GET health_path` on every member, 2xx = up)."""
        path = self.settings.health_path
        if not path:
            return

        async def probe(member: Member) -> None:
            try:
                response = await self.transport.send(
                    member.host, member.port, "GET", path,
                    [("Host", member.name), ("User-Agent", "minisys-gateway-health")], b"",
                    self.settings.connect_timeout + 1.0,
                )  # fmt: skip
                ok = 200 <= response.status < 300
            except Exception as exc:  # any failure means "not healthy", whatever it was
                member.last_error = f"health: {exc!r}"
                ok = False
            member.check_result(ok)
            if ok:
                member.ejected_until = 0.0

        await asyncio.gather(*(probe(m) for m in self.members))

    def stats(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "breaker": self.breaker.state,
            "members": [
                {
                    "member": m.name,
                    "healthy": m.healthy,
                    "ejected_for": round(max(0.0, m.ejected_until - now), 3),
                    "active": m.active,
                    "requests": m.requests,
                    "failures": m.failures,
                    "last_error": m.last_error,
                }
                for m in self.members
            ],
        }


# pick()'s `exclude` for a first attempt.
_NONE_TRIED: frozenset[int] = frozenset()


class _Forwarding:
    """One `forward_now`: the first attempt's outcome, accounted as `forward` does."""

    __slots__ = ("body", "cancel_send", "deadline", "headers", "index", "method", "pool",
                 "target", "task", "then")  # fmt: skip

    def __init__(
        self,
        pool: UpstreamPool,
        index: int,
        method: str,
        target: str,
        headers: list,
        body: bytes,
        deadline: float,
    ) -> None:
        self.pool = pool
        self.index = index
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.deadline = deadline
        self.then: Callable[[Forwarded | None, Exception | None], None] | None = None
        self.cancel_send: Callable[[], None] | None = None
        self.task: asyncio.Task | None = None

    def done(self, response: Any, exc: Exception | None) -> None:
        pool = self.pool
        member = pool.members[self.index]
        member.active -= 1
        self.cancel_send = None
        assert self.then is not None
        if exc is None:
            self.then(pool.succeeded(member, response, []), None)
            return
        attempts: list[Attempt] = []
        if pool.failed(member, exc, self.method, attempts):
            resume = (self.deadline, {self.index}, attempts, exc)
            forward = pool.forward(self.method, self.target, self.headers, self.body, resume)
            self.task = asyncio.ensure_future(forward)
            self.task.add_done_callback(self._retried)
            return
        pool.breaker.record(False, pool.clock())
        exc.attempts = attempts  # type: ignore[attr-defined]
        self.then(None, exc)

    def _retried(self, task: asyncio.Task) -> None:
        self.task = None
        if task.cancelled():
            return
        assert self.then is not None
        exc = task.exception()
        if exc is not None:
            self.then(None, exc)
        else:
            self.then(task.result(), None)

    def cancel(self) -> None:
        """Abandon the request (as cancelling `forward` would)."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        elif self.cancel_send is not None:
            self.cancel_send()
            self.cancel_send = None
            self.pool.members[self.index].active -= 1


def _outcome(error: Exception) -> str:
    if isinstance(error, ConnectFailed):
        return "connect"
    if isinstance(error, UpstreamReset):
        return "reset"
    return "timeout"
