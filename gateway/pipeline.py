"""The request pipeline: every step a request takes through the gateway, in order.

This is the gateway's main line; each step's rules live in its own module:

    1. request id     keep a well-formed X-Request-ID, else mint one        proxy.py
    2. canonical path percent-decode, remove dot segments (400 if broken)   routes.py
    3. route          longest prefix, host, method (404 / 405)              routes.py
    4. auth           API key or HS256 JWT (401), consumer allowed? (403)   auth.py
    5. rate limits    consumer / route / client buckets (429)               ratelimit.py
    6. concurrency    in-flight requests per consumer (429)
    7. headers        hop-by-hop out, X-Forwarded-*, Via, ids in            proxy.py
    8. forward        breaker (503), member, retries, timeouts (502 / 504)  upstream.py
    9. answer         hop-by-hop out, rate-limit headers and request id in  proxy.py
   10. account        access log line and metrics                access_log.py, metrics.py

Every refusal is an `application/problem+json` body, with the request id and (on limited
routes) the rate-limit headers, so a client can tell the gateway's "no" from the app's.

The steps run two ways with one outcome: `handle` is the whole pipeline as a coroutine;
`handle_now` runs the usual request from callbacks (no Task, no future: steps 1-5 at once,
8 through the pool's and the client's fast paths, 9-10 in the client's read callback) and
hands anything unusual to the coroutine steps (`_proceed`, `UpstreamPool.forward`).

`Gateway.apply(config)` swaps in a new configuration in one step between requests (SIGHUP):
routes and consumers are replaced; a pool whose settings did not change keeps its breaker
and health state; bucket tables survive because they are keyed by the limit itself.

Simpler than the real thing: Kong runs this as a chain of plugins with configurable order
and phases; here the order is fixed and reads top to bottom.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable
from typing import Any

from minisys.http.head import Headers
from minisys.http.message import PROBLEM_JSON, Request, Response, problem_body
from minisys.logs import get_logger, request_id
from minisys.metrics import Registry

from . import access_log
from .access_log import AccessRecord
from .auth import Authenticator, AuthError, Consumer, challenge
from .config import GatewayConfig, Upstream
from .hot import HotPath
from .metrics import GatewayMetrics
from .proxy import client_headers, pick_request_id, upstream_headers
from .ratelimit import Check, Limit, Outcome, RateLimiter
from .ratelimit import headers as ratelimit_headers
from .routes import NoRoute, PathError, Route, RouteTable, encode_path, normalize_path
from .trip import QUOTA_EXCEEDED, Refusal, Trip
from .upstream import (
    ConnectFailed,
    Forwarded,
    NoMember,
    Transport,
    UpstreamPool,
    UpstreamReset,
    UpstreamTimeout,
)

log = get_logger("gateway")

# How often idle buckets are reclaimed; a bucket refills within its window anyway.
SWEEP_INTERVAL_S = 5.0

# Routing decisions remembered per (method, Host, raw path): real traffic repeats a few
# thousand paths, and a flood of distinct ones must not grow memory past this.
MAX_ROUTE_CACHE = 4096


class Gateway:
    """Holds the live configuration and answers requests (the HTTP server's handler)."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        transport_factory: Callable[[Upstream], Transport],
        limiter: RateLimiter | None = None,
        registry: Registry | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.transport_factory = transport_factory
        self.limiter = limiter or RateLimiter()
        self.metrics = GatewayMetrics(registry or Registry())
        self.wall = wall
        self.pools: dict[str, UpstreamPool] = {}
        self._closing: set[asyncio.Future] = set()
        self.in_flight: dict[str, int] = {}
        self.config = config
        self.hot = HotPath(self)  # the hot path's tables (hot.py), reset by apply
        self.apply(config)

    def apply(self, config: GatewayConfig) -> None:
        """Start serving `config` (from now on; requests in flight finish under the old)."""
        pools = {}
        for name, settings in config.upstreams.items():
            old = self.pools.get(name)
            if old is not None and old.settings == settings:
                pools[name] = old
            else:
                pools[name] = UpstreamPool(settings, self.transport_factory(settings))
        retired = [p for p in self.pools.values() if p not in pools.values()]
        self.pools = pools
        for pool in retired:
            # Requests in flight on a retired pool finish; its idle connections close now.
            close = getattr(pool.transport, "close", None)
            if close is not None:
                task = asyncio.ensure_future(close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self.routes = RouteTable(config.routes)
        # (method, Host, raw path) -> (route, path to send upstream); see _route.
        self._decisions: dict[tuple[str, str | None, str], tuple[Route, str]] = {}
        # (route name, consumer id) -> (its consumer and route Checks, any shared?); _plan.
        self._plans: dict[tuple[str, str | None], tuple[list[Check], bool]] = {}
        self.auth = Authenticator(config.consumers)
        self.config = config
        self.limiter.fail_open = config.fail_open
        self.limiter.store_timeout = config.store_timeout
        self.hot.reset()

    # --- the pipeline --------------------------------------------------------------------

    async def handle(self, request: Request, conn: Any = None) -> Response:
        """The whole pipeline as one coroutine (the general path; see `handle_now`)."""
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            # The gateway's own liveness, for the lb and the launcher: never proxied, never
            # limited, not logged (health checks every few seconds would drown the log).
            return Response(200, [("Content-Type", "application/json")], b'{"status":"ok"}')
        trip = self._begin(request, conn)
        try:
            admitted = self._admit(request, trip)
        except Refusal as refusal:
            return self._account(trip, refusal.answer(trip))
        return self._account(trip, await self._proceed(request, trip, *admitted))

    def handle_now(self, request: Request, conn: Any) -> bool:
        """The pipeline from callbacks, without a Task (the HTTP server's `handle_now`).

        Steps 1-5 run now; a refusal is answered now; the usual request (local limits
        only, breaker closed, a warm upstream connection free) goes out now and is
        answered from the client's callback. Anything else - shared limits, concurrency
        caps, no warm connection - finishes in `_proceed` as a Task, as `handle` would.
        Each request runs in its own copy of the context, as a Task would (request_id).
        """
        if request.path == "/healthz":
            return False  # answered by `handle`, on the general path
        context = contextvars.copy_context()
        return context.run(self._start_now, request, conn, context)

    def _start_now(self, request: Request, conn: Any, context: contextvars.Context) -> bool:
        trip = self._begin(request, conn)
        try:
            route, target, consumer, shared = self._admit(request, trip)
        except Refusal as refusal:
            conn.answer_now(request, self._account(trip, refusal.answer(trip)))
            return True
        if shared is None and (consumer is None or not consumer.max_concurrency):
            pool = self.pools[route.upstream]
            path, headers = self._outbound(request, route, target, consumer, trip)
            trip.upstream_start = time.perf_counter()
            then = functools.partial(context.run, self._forwarded, request, conn, pool, trip)
            cancel = pool.forward_now(request.method, path, headers, request.body, then)
            if cancel is not None:
                conn.cancel_now = cancel
                return True
        task = asyncio.ensure_future(self._proceed(request, trip, route, target, consumer, shared))
        task.add_done_callback(functools.partial(self._proceeded, request, conn, trip))
        conn.cancel_now = task.cancel
        return True

    def _forwarded(
        self, request: Request, conn: Any, pool: UpstreamPool, trip: Trip,
        result: Forwarded | None, exc: Exception | None,
    ) -> None:  # fmt: skip
        """The upstream's answer (or failure) to a request `handle_now` sent."""
        try:
            try:
                response = self._answer(request, pool, result, exc, trip)
            except Refusal as refusal:
                response = refusal.answer(trip)
            response = self._account(trip, response)
        except Exception:  # a bug must not leave the client waiting, nor break the client
            log.exception("gateway failed for %s %s", request.method, request.target)
            response = Response(500, [("Content-Type", PROBLEM_JSON)], problem_body(500))
        conn.answer_now(request, response)

    def _proceeded(self, request: Request, conn: Any, trip: Trip, task: asyncio.Task) -> None:
        if task.cancelled():
            return  # abandoned by the server (handler timeout, client gone)
        exc = task.exception()
        if exc is not None:
            log.error("gateway failed for %s %s", request.method, request.target, exc_info=exc)
            response = Response(500, [("Content-Type", PROBLEM_JSON)], problem_body(500))
        else:
            response = self._account(trip, task.result())
        conn.answer_now(request, response)

    def _begin(self, request: Request, conn: Any) -> Trip:
        """Step 1, and what the later steps share about this request."""
        trip = Trip()
        trip.start = time.perf_counter()
        trip.rid = rid = pick_request_id(request.headers.get("x-request-id"))
        request_id.set(rid)
        trip.client_ip = client_ip = str(request.peer[0]) if request.peer else ""
        trip.record = AccessRecord(rid, client_ip, request.method, request.path)
        trip.trusted_hop = conn is not None and conn.trusted_hop
        trip.extra = []
        return trip

    async def _proceed(
        self, request: Request, trip: Trip, route: Route, target: str,
        consumer: Consumer | None, shared: list[Check] | None,
    ) -> Response:  # fmt: skip
        """Steps 5-9 after `_admit`: shared limits, concurrency, forwarding, the answer."""
        try:
            if shared is not None:
                self._limit_outcomes(route, await self._rate_limit(shared), trip.extra)
            limit = consumer.max_concurrency if consumer is not None else 0
            if not limit:
                return await self._forward(request, route, target, consumer, trip)
            return await self._forward_counted(request, route, target, consumer, trip)
        except Refusal as refusal:
            return refusal.answer(trip)

    def _account(self, trip: Trip, response: Response) -> Response:
        """Step 10: the access log line and the metrics."""
        elapsed = time.perf_counter() - trip.start
        record = trip.record
        status = response.status
        record.status = status
        record.bytes = len(response.body) if type(response.body) is bytes else 0
        record.total_ms = round(elapsed * 1000, 3)
        self.metrics.count(record.route, status, elapsed)
        if self.config.access_log:
            access_log.write(record)
        return response

    def _admit(
        self, request: Request, trip: Trip
    ) -> tuple[Route, str, Consumer | None, list[Check] | None]:
        """Steps 2-5 up to the shared limits: route, auth, and the local rate limits.

        Returns the route, the path to send upstream, the consumer, and the checks that
        still need the shared store (None when every limit was local, the usual case: then
        this step is complete without waiting for anything). Raises Refusal.
        """
        key = (request.method, request.headers.get("host"), request.path)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._route(*key)
            if len(self._decisions) < MAX_ROUTE_CACHE:
                self._decisions[key] = decision
        route, target = decision
        record = trip.record
        record.route = route.name

        consumer: Consumer | None = None
        if route.auth:
            consumer = self._authenticate(request, route.name)
            record.consumer = consumer.id
            if route.consumers is not None and consumer.id not in route.consumers:
                self.metrics.auth_failures.inc(route=route.name, status="403")
                raise Refusal(403, f"consumer {consumer.id!r} may not use this route", "forbidden")

        checks, shared = self._checks(route, consumer, trip.client_ip)
        if not checks:
            return route, target, consumer, None
        if shared:
            return route, target, consumer, checks
        # Local buckets only: no store to wait for, so no coroutine either.
        self._limit_outcomes(route, self.limiter.check_local(checks), trip.extra)
        return route, target, consumer, None

    def _checks(
        self, route: Route, consumer: Consumer | None, client_ip: str
    ) -> tuple[list[Check], bool]:
        """The bucket checks of one request, and whether any is shared (kept in kvcache)."""
        plan = self._plans.get((route.name, consumer.id if consumer is not None else None))
        if plan is None:
            plan = self._plan(route, consumer)
        checks, shared = plan
        if consumer is None and route.client_limit is not None:
            client = Check("client", route.client_limit, f"{route.name}|{client_ip}")
            checks = [*checks, client]
            shared = shared or route.client_limit.policy == "shared"
        return checks, shared

    def _plan(self, route: Route, consumer: Consumer | None) -> tuple[list[Check], bool]:
        """The consumer and route limits of one (route, consumer), remembered until `apply`."""
        checks = []
        if consumer is not None and consumer.limit is not None:
            checks.append(self._check("consumer", consumer.limit, consumer.id))
        if route.limit is not None:
            checks.append(self._check("route", route.limit, route.name))
        plan = checks, any(c.limit.policy == "shared" for c in checks)
        if len(self._plans) < MAX_ROUTE_CACHE:
            self._plans[(route.name, consumer.id if consumer is not None else None)] = plan
        return plan

    def _check(self, scope: str, limit: Limit, key: str) -> Check:
        """A planned check; a local one knows its bucket table (kept until `apply`)."""
        table = self.limiter.table(scope, limit) if limit.policy == "local" else None
        return Check(scope, limit, key, table)

    def _limit_outcomes(
        self, route: Route, outcomes: list[Outcome], extra: list[tuple[str, str]]
    ) -> None:
        """Add the rate-limit headers; raise the 429 if any limit refused."""
        extra.extend(ratelimit_headers(outcomes))
        refused = [o for o in outcomes if not o.allowed]
        if refused:
            for o in refused:
                self.metrics.limited.inc(route=route.name, policy=o.name)
            raise Refusal(
                429, "rate limit exceeded", "rate_limited",
                extra_doc={
                    "type": QUOTA_EXCEEDED,
                    "violated-policies": [o.name for o in refused],
                },
            )  # fmt: skip

    async def _forward_counted(
        self, request: Request, route: Route, target: str, consumer: Consumer, trip: Trip
    ) -> Response:
        """Step 6, for consumers with `max_concurrency`: count the request while in flight."""
        in_flight = self.in_flight
        if in_flight.get(consumer.id, 0) >= consumer.max_concurrency:
            self.metrics.limited.inc(route=route.name, policy="concurrency")
            raise Refusal(
                429, "too many concurrent requests", "concurrency", [("Retry-After", "1")]
            )
        in_flight[consumer.id] = in_flight.get(consumer.id, 0) + 1
        try:
            return await self._forward(request, route, target, consumer, trip)
        finally:
            left = in_flight[consumer.id] - 1
            if left:
                in_flight[consumer.id] = left
            else:
                del in_flight[consumer.id]

    def _route(self, method: str, host: str | None, raw_path: str) -> tuple[Route, str]:
        """Steps 2 and 3: the route and the (canonical, re-encoded) path to send upstream.

        A pure function of its arguments for a given route table, which is why _admit
        may remember its answers until the next `apply`. Refusals are not remembered.
        """
        try:
            path = normalize_path(raw_path)
        except PathError as exc:
            raise Refusal(400, str(exc), "bad_request") from None
        try:
            route = self.routes.match(method, host, path)
        except NoRoute as exc:
            if exc.allowed:
                allow = ", ".join(sorted(exc.allowed))
                refusal = Refusal(405, "method not allowed here", "no_route", [("Allow", allow)])
                raise refusal from None
            raise Refusal(404, "no route for this path", "no_route") from None
        return route, encode_path(route.upstream_path(path))

    def _authenticate(self, request: Request, route: str) -> Consumer:
        headers = request.headers
        authorization = headers.get_all("authorization")
        api_key = headers.get_all("x-api-key")
        try:
            if len(authorization) > 1 or len(api_key) > 1:
                raise AuthError("more than one credential", "invalid_request")
            return self.auth.authenticate(
                authorization[0] if authorization else None,
                api_key[0] if api_key else None,
                self.wall(),
            )
        except AuthError as exc:
            self.metrics.auth_failures.inc(route=route, status="401")
            raise Refusal(401, exc.detail, "auth", [("WWW-Authenticate", challenge(exc))]) from None

    async def _rate_limit(self, checks: list[Check]) -> list[Outcome]:
        local = [c for c in checks if c.limit.policy == "local"]
        outcomes = self.limiter.check_local(local) if local else []
        if any(not o.allowed for o in outcomes):
            return outcomes
        for check in checks:
            if check.limit.policy == "shared":
                errors = self.limiter.store_errors
                outcomes.append(await self.limiter.check_shared(check))
                if self.limiter.store_errors != errors:
                    self.metrics.store_errors.inc()
        return outcomes

    async def _forward(
        self, request: Request, route: Route, target: str, consumer: Consumer | None, trip: Trip
    ) -> Response:
        """Steps 7-9: headers, the upstream attempt(s), and the answer."""
        pool = self.pools[route.upstream]
        target, headers = self._outbound(request, route, target, consumer, trip)
        trip.upstream_start = time.perf_counter()
        try:
            result = await pool.forward(request.method, target, headers, request.body)
        except (NoMember, ConnectFailed, UpstreamReset, UpstreamTimeout) as exc:
            return self._answer(request, pool, None, exc, trip)
        return self._answer(request, pool, result, None, trip)

    def _outbound(
        self, request: Request, route: Route, target: str, consumer: Consumer | None, trip: Trip
    ) -> tuple[str, list[tuple[str, str]]]:
        """Step 7: the target and the header list the upstream gets."""
        if request.query:
            target += "?" + request.query
        headers = upstream_headers(
            request.headers,
            client_ip=trip.client_ip,
            via=self.config.via,
            request_id=trip.rid,
            consumer=consumer.id if consumer is not None else None,
            strip_credentials=route.auth,
            trusted_hop=trip.trusted_hop,
        )
        return target, headers

    def _answer(
        self, request: Request, pool: UpstreamPool, result: Forwarded | None,
        exc: Exception | None, trip: Trip,
    ) -> Response:  # fmt: skip
        """Steps 8-9 once the pool is done: the refusal for a failure (raised), else the
        upstream's response with our headers."""
        record = trip.record
        record.upstream_ms = round((time.perf_counter() - trip.upstream_start) * 1000, 3)
        if isinstance(exc, NoMember):
            retry = str(max(1, int(exc.retry_after + 0.999)))
            raise Refusal(503, "upstream circuit open", "circuit_open", [("Retry-After", retry)])
        if exc is not None:
            attempts = getattr(exc, "attempts", [])
            self._count_attempts(pool, attempts)
            record.attempts = len(attempts)
            record.upstream = attempts[-1].member if attempts else "-"
            if isinstance(exc, UpstreamTimeout):
                raise Refusal(504, "upstream timed out", "timeout")
            if isinstance(exc, ConnectFailed) and exc.timed_out:
                raise Refusal(504, "upstream connect timed out", "connect_timeout")
            if isinstance(exc, (ConnectFailed, UpstreamReset)):
                kind = "connect" if isinstance(exc, ConnectFailed) else "reset"
                raise Refusal(502, f"upstream unavailable ({kind})", kind)
            raise exc
        assert result is not None
        self._count_attempts(pool, result.attempts)
        record.upstream = result.member.name
        record.attempts = len(result.attempts)
        upstream = result.response
        out = client_headers(
            upstream.headers, via=self.config.via, request_id=trip.rid,
            keep_length=request.method == "HEAD",
        )  # fmt: skip
        out.extend(trip.extra)
        reason = upstream.reason or None
        return Response(upstream.status, Headers.adopt(out), upstream.body, reason=reason)

    def _count_attempts(self, pool: UpstreamPool, attempts: list) -> None:
        if len(attempts) == 1 and attempts[0].outcome == "ok":
            return  # the usual case: nothing to count
        for attempt in attempts:
            if attempt.outcome != "ok":
                self.metrics.upstream_errors.inc(upstream=pool.name, kind=attempt.outcome)
        if len(attempts) > 1:
            self.metrics.retries.inc(len(attempts) - 1, upstream=pool.name)

    async def close(self) -> None:
        for pool in self.pools.values():
            close = getattr(pool.transport, "close", None)
            if close is not None:
                await close()

    # --- background work -----------------------------------------------------------------

    async def background(self) -> None:
        """Active health checks per pool and the idle-bucket sweep, until cancelled."""
        last_check: dict[str, float] = {}
        checks: set[asyncio.Task] = set()
        last_sweep = time.monotonic()
        while True:
            now = time.monotonic()
            for name, pool in list(self.pools.items()):
                interval = pool.settings.health_interval
                if pool.settings.health_path and now - last_check.get(name, 0.0) >= interval:
                    last_check[name] = now
                    task = asyncio.create_task(pool.check_health())
                    checks.add(task)
                    task.add_done_callback(checks.discard)
            if now - last_sweep >= SWEEP_INTERVAL_S:
                last_sweep = now
                self.limiter.sweep()
            await asyncio.sleep(0.25)
