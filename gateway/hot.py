"""The gateway's hot path: the commonest proxied request, from raw bytes to raw bytes.

On the request's journey this is the shortcut through pipeline.py's ten steps for the
request a gateway sees all day: one read holding one plain request (hot_parse.py),
a route already seen, credentials that check out, local token buckets with a token to
spare, and a warm pooled connection to the upstream. Then

    client read ─▶ scan_request ─▶ route, auth, buckets (the pipeline's own tables)
                ─▶ one join: the upstream request ─▶ pooled connection (request_raw_now)
    upstream read ─▶ scan_response ─▶ one join: the client's response (answer_raw)
                ─▶ breaker, metrics, access log

with no Request, Headers, Trip, Response or ClientResponse objects, no Task and no
future. Every rule of the general path holds; where a rule needs more than the hot path
knows, it declines *before changing anything* (so the general path starts from the same
state): a refusal (401/403/404/429, the route check, a bucket without a whole token),
shared limits, concurrency caps, `/healthz`, and any head hot_parse.py does not take.
Once a token is spent the request always finishes as the pipeline would, on one of
three ways: the raw response; the client's parsed response or error, handed to the
pipeline's `_forwarded` (retries through `_Forwarding`, 502/504 refusals); or, with no
warm connection or the breaker not closed, `UpstreamPool.forward` in a Task.

Measured (bench/gateway.py CPU per request and callgrind): see README.md, "Speed".

Simpler than the real thing: nginx has only this kind of path, in C; here it is an
opt-in shortcut beside a general path that stays the reference.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import TYPE_CHECKING, Any

from minisys.http.client_result import CLIENT_LIMITS
from minisys.logs import request_id

from . import access_log
from .access_log import AccessRecord
from .auth import AuthError
from .breaker import CLOSED
from .hot_parse import joined, scan_request, scan_response
from .proxy import REQUEST_ID_RE, new_request_id
from .ratelimit import headers as ratelimit_headers
from .token_bucket import NS_PER_S
from .trip import Refusal, Trip
from .upstream import (
    BREAKER_STATUSES,
    ConnectFailed,
    HttpTransport,
    NoMember,
    UpstreamReset,
    UpstreamTimeout,
    _Forwarding,
    _mapped,
)

if TYPE_CHECKING:
    from .pipeline import Gateway

# Routing decisions remembered per (method, Host, raw path), as bytes (pipeline.py keeps
# its own by str); the same bound as there.
MAX_HOT_ROUTES = 4096
# Methods whose upstream request always carries Content-Length (serialize.BODY_METHODS).
BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


class HotPath:
    """The gateway's tables seen from raw bytes; one per Gateway, reset by `apply`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.reset()

    def reset(self) -> None:
        # (method, Host, raw path) -> (route, upstream path bytes)
        self.routes: dict[tuple[bytes, bytes, bytes], tuple[Any, bytes]] = {}
        # consumer id -> its `X-Consumer-ID` line
        self.consumer_lines: dict[str, bytes] = {}
        self.via = b"1.1 " + self.gateway.config.via.encode("latin-1")

    def take_request(self, conn: Any, data: bytes) -> bool:
        """The server's `take_request`: True if this read was taken (and is in flight)."""
        scan = scan_request(data, conn.settings.limits)
        if scan is None:
            return False
        gateway = self.gateway
        key = (scan.method, scan.host, scan.path)
        decision = self.routes.get(key)
        if decision is None:
            if scan.path == b"/healthz":
                return False  # the gateway's own answer, on the general path
            try:
                route, target = gateway._route(
                    scan.method.decode(), scan.host.decode("latin-1"), scan.path.decode()
                )
            except Refusal:
                return False
            decision = (route, target.encode())
            if len(self.routes) < MAX_HOT_ROUTES:
                self.routes[key] = decision
        route, target = decision

        consumer = None
        if route.auth:
            try:
                if scan.authorization is None and scan.api_key is not None:
                    # What authenticate(None, key, now) comes down to, minus two calls.
                    consumer = gateway.auth.check_key(scan.api_key.decode("latin-1"))
                else:
                    consumer = gateway.auth.authenticate(
                        None
                        if scan.authorization is None
                        else scan.authorization.decode("latin-1"),
                        None if scan.api_key is None else scan.api_key.decode("latin-1"),
                        gateway.wall(),
                    )
            except AuthError:
                return False
            if route.consumers is not None and consumer.id not in route.consumers:
                return False
            if consumer.max_concurrency:
                return False
        pool = gateway.pools[route.upstream]
        if type(pool.transport) is not HttpTransport:
            return False  # a stand-in transport (tests) only speaks the general way
        peer = conn.peer
        client_ip = str(peer[0]) if peer else ""
        checks, shared = gateway._checks(route, consumer, client_ip)
        if shared:
            return False
        limit_lines = b""
        if checks:
            limiter = gateway.limiter
            now = limiter.clock_ns()
            check = checks[0]
            if len(checks) == 1 and check.table is not None:  # a planned local check
                decision = check.table.take_if_allowed(check.key, now)
                if decision is None:
                    return False  # the general path refuses it (429) and says why
                reset = -(-decision.full_in_ns // NS_PER_S)
                remaining = decision.remaining
                limit_lines = check.lines_template() % (remaining, reset, remaining, reset)
            else:
                for check in checks:
                    table = check.table or limiter.table(check.name, check.limit)
                    if table.level(check.key, now) < 1:
                        return False
                # Every bucket has a token: check_local takes one from each.
                extra = ratelimit_headers(limiter.check_local(checks, now))
                limit_lines = "".join(f"{n}: {v}\r\n" for n, v in extra).encode("latin-1")

        # The request upstream, as pipeline._outbound + the client would write it.
        lines = scan.lines
        if route.auth:
            for i in scan.credentials:
                lines[i] = b""
        rid = scan.request_id
        if rid is None or REQUEST_ID_RE.fullmatch(rid.decode("latin-1")) is None:
            rid = new_request_id().encode()
        if scan.query:
            target += b"?" + scan.query
        body = scan.body
        out = [
            scan.method, b" ", target, b" HTTP/1.1\r\n", joined(lines),
            b"X-Forwarded-For: ", client_ip.encode(), b"\r\nX-Forwarded-Proto: http\r\n"
            b"X-Forwarded-Host: ", scan.host, b"\r\nVia: ", self.via, b"\r\nX-Request-ID: ",
            rid, b"\r\n",
        ]  # fmt: skip
        if consumer is not None:
            line = self.consumer_lines.get(consumer.id)
            if line is None:
                line = self.consumer_lines[consumer.id] = (
                    f"X-Consumer-ID: {consumer.id}\r\n".encode()
                )
            out.append(line)
        if body or scan.method in BODY_METHODS:
            out.append(b"Content-Length: %d\r\n" % len(body))
        out += (b"\r\n", body)

        hot = HotRequest()
        hot.start = time.perf_counter()
        hot.path = self
        hot.conn = conn
        hot.method = scan.method.decode()
        hot.raw_path = scan.path
        hot.route = route
        hot.consumer = consumer
        hot.client_ip = client_ip
        hot.rid = rid
        hot.limit_lines = limit_lines
        hot.data = b"".join(out)
        hot.pool = pool
        conn.start_raw(hot, hot.cancel)
        hot.send()
        return True


class HotRequest:
    """One request on the hot path; to the HTTP server it stands in for the Request."""

    __slots__ = ("cancel_send", "client_ip", "conn", "consumer", "data", "deadline",
                 "forwarding", "index", "limit_lines", "method", "path", "pool", "raw_path",
                 "response", "rid", "route", "start", "task", "upstream_start")  # fmt: skip

    # What the server reads of a request it answers (HTTP/1.1 keep-alive, checked by
    # scan_request).
    keep_alive = True
    version = "1.1"

    path: HotPath
    conn: Any
    method: str
    raw_path: bytes
    route: Any
    consumer: Any
    client_ip: str
    rid: bytes
    limit_lines: bytes
    data: bytes
    pool: Any
    start: float

    @property
    def target(self) -> str:  # for the server's log lines
        return self.raw_path.decode("latin-1")

    def send(self) -> None:
        """Step 8: the pooled connection's fast path, else `UpstreamPool.forward`."""
        pool = self.pool
        self.forwarding = self.task = self.cancel_send = None
        self.upstream_start = time.perf_counter()
        if type(pool.transport) is HttpTransport and pool.breaker.state == CLOSED:
            now = pool.clock()
            ring = pool._next
            index = pool.pick(now, ())
            if index is not None:
                member = pool.members[index]
                settings = pool.settings
                cancel = pool.transport.client.request_raw_now(
                    self.method, (member.host, member.port), self.data, self,
                    timeout=min(settings.total_timeout, settings.read_timeout),
                )  # fmt: skip
                if cancel is not None:
                    member.active += 1
                    member.requests += 1
                    self.index = index
                    self.deadline = now + settings.total_timeout
                    self.cancel_send = cancel
                    return
                pool._next = ring  # the general path picks this member again
        task = asyncio.ensure_future(self._forward())
        task.add_done_callback(self._forwarded_slowly)
        self.task = task

    # --- the pooled client's callbacks (minisys.http.client_now.RawTaker) ---------------

    def take(self, data: bytes) -> bool:
        self.response = scan_response(data, CLIENT_LIMITS)
        return self.response is not None

    def taken(self) -> None:
        """Step 9-10 from the raw response: breaker, the client's answer, accounting."""
        self.cancel_send = None
        status, line, fields, body = self.response
        pool = self.pool
        member = pool.members[self.index]
        member.active -= 1
        breaker = pool.breaker
        ok = status not in BREAKER_STATUSES
        if ok and breaker.state == CLOSED:
            breaker.failures = 0  # CircuitBreaker.record's usual case, without the call
        else:
            breaker.record(ok, pool.clock())
        gateway = self.path.gateway
        elapsed = time.perf_counter() - self.start
        gateway.metrics.count(self.route.name, status, elapsed)  # step 10 (before the
        if gateway.config.access_log:  # answer leaves, as pipeline._account is)
            record = self._record()
            record.status = status
            record.bytes = len(body)
            record.upstream = member.name
            record.attempts = 1
            record.upstream_ms = round((time.perf_counter() - self.upstream_start) * 1000, 3)
            record.total_ms = round(elapsed * 1000, 3)
            access_log.write(record)
        out = [line, fields, b"Via: ", self.path.via, b"\r\nX-Request-ID: ", self.rid, b"\r\n"]
        out += (self.limit_lines, b"Content-Length: %d\r\n" % len(body))
        self.conn.answer_raw(self, out, body)

    def then(self, response: Any, exc: Exception | None) -> None:
        """Anything but a plain response: the pool's and the pipeline's general steps."""
        self.cancel_send = None
        if exc is not None:
            exc = _mapped(exc)  # the client's error as the pool's, as HttpTransport does
        forwarding = _Forwarding(
            self.pool, self.index, self.method, "", self.data, b"", self.deadline
        )  # the request's bytes stand in for its headers: see HttpTransport.send
        forwarding.then = self._forwarded
        self.forwarding = forwarding
        contextvars.copy_context().run(self._in_context, forwarding, response, exc)

    def _in_context(self, forwarding: _Forwarding, response: Any, exc: Exception | None) -> None:
        request_id.set(self.rid.decode())
        forwarding.done(response, exc)

    def _forwarded(self, result: Any, exc: Exception | None) -> None:
        self.forwarding = None
        self.path.gateway._forwarded(self, self.conn, self.pool, self._trip(), result, exc)

    # --- the general path's way, in a Task ----------------------------------------------

    async def _forward(self) -> Any:
        gateway = self.path.gateway
        trip = self._trip()
        request_id.set(trip.rid)
        try:
            try:
                result = await self.pool.forward(self.method, "", self.data, b"")
            except (NoMember, ConnectFailed, UpstreamReset, UpstreamTimeout) as exc:
                return trip, gateway._answer(self, self.pool, None, exc, trip)
            return trip, gateway._answer(self, self.pool, result, None, trip)
        except Refusal as refusal:
            return trip, refusal.answer(trip)

    def _forwarded_slowly(self, task: asyncio.Task) -> None:
        self.task = None
        if task.cancelled():
            return  # abandoned by the server (handler timeout, client gone)
        gateway = self.path.gateway
        exc = task.exception()
        if exc is not None:  # a bug: answer 500 as pipeline._proceeded does
            gateway._proceeded(self, self.conn, Trip(), task)
            return
        trip, response = task.result()
        self.conn.answer_now(self, gateway._account(trip, response))

    def cancel(self) -> None:
        """Abandon the request (handler timeout, client gone), as `_Forwarding` would."""
        if self.forwarding is not None:
            self.forwarding.cancel()
        elif self.task is not None:
            self.task.cancel()
        elif self.cancel_send is not None:
            self.cancel_send()
            self.pool.members[self.index].active -= 1
        self.forwarding = self.task = self.cancel_send = None

    # --- what the general steps need to know --------------------------------------------

    def _record(self) -> AccessRecord:
        rid = self.rid.decode()
        record = AccessRecord(rid, self.client_ip, self.method, self.target)
        record.route = self.route.name
        if self.consumer is not None:
            record.consumer = self.consumer.id
        return record

    def _trip(self) -> Trip:
        trip = Trip()
        trip.start = self.start
        trip.rid = self.rid.decode()
        trip.client_ip = self.client_ip
        trip.record = self._record()
        trip.trusted_hop = False  # an X-Forwarded-For from the client declines the hot path
        # The rate-limit fields as the general path keeps them: (name, value) pairs.
        lines = self.limit_lines.decode("latin-1").split("\r\n")
        trip.extra = [tuple(line.split(": ", 1)) for line in lines if line]  # type: ignore[misc]
        trip.upstream_start = self.upstream_start
        return trip
