"""A small web framework: routes, middleware, JSON, problem+json errors, /healthz, /metrics.

On the request's journey this is the layer the appserver's shop code is written in, and
that the gateway's and lb's admin APIs and the launcher's dashboard use. An `App` is the
`handler` the HTTP server calls; it does, for every request:

    request id  keep a sane `X-Request-ID` or mint 32 random hex digits; put it in the
                logs' ContextVar
    middleware  each `async (request, call_next) -> Response`, outermost first
    routing     exact paths by dict lookup, `/users/{id}` patterns by segment match;
                no path match → 404, path matches but not the method → 405 with `Allow`
    errors      `raise Problem(404, detail=…)` or `HttpError`, or a crash (500), all
                become `application/problem+json` (RFC 9457)
    after       `X-Request-ID` on the response, one access-log line, metrics

    app = App("shop")

    @app.get("/users/{id}")
    async def get_user(request):
        return json_response({"id": request.params["id"]})

    server = http_server("appserver", config, app)

Simpler than the real thing: no regex or typed path converters, no sub-applications,
no content negotiation, no streaming request bodies; HEAD is answered by the GET route.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from minisys.http.head import HttpError
from minisys.http.message import (
    Request,
    Response,
    decoded_segments,
    json_response,
    problem,
    problem_body,
)
from minisys.logs import get_logger, request_id
from minisys.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from minisys.metrics import Registry

__all__ = ["App", "Problem", "Request", "Response", "json_response", "problem", "problem_body"]

access_log = get_logger("minisys.http.access")
# Routes whose successful hits the access log keeps at DEBUG (probes, scrapes).
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
log = get_logger("minisys.http.web")

RouteHandler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[Request, RouteHandler], Awaitable[Response]]

# A client-chosen request id goes into every log line: keep it short and plain.
MAX_REQUEST_ID = 128
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
PARAM_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Problem(Exception):
    """Raise from a handler to answer with a problem+json document."""

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {title or ''} {detail or ''}".strip())
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = list(headers or ())
        self.extra = extra

    def response(self) -> Response:
        return problem(self.status, self.title, self.detail, headers=self.headers, **self.extra)


class _Route:
    __slots__ = ("handlers", "names", "pattern", "segments")

    def __init__(self, pattern: str) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"route {pattern!r} must start with /")
        self.pattern = pattern
        self.segments = pattern.split("/")[1:]
        # For each segment: the parameter name, or None for a literal.
        self.names = [m.group(1) if (m := PARAM_RE.fullmatch(s)) else None for s in self.segments]
        self.handlers: dict[str, RouteHandler] = {}

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.segments):
            return None
        params = {}
        for want, name, got in zip(self.segments, self.names, segments, strict=True):
            if name is None:
                if want != got:
                    return None
            elif not got:
                return None
            else:
                params[name] = got
        return params

    def allow(self) -> str:
        methods = set(self.handlers)
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))


class App:
    """Routes plus middleware; call it with a Request (it is the server's handler)."""

    def __init__(
        self,
        name: str = "app",
        *,
        registry: Registry | None = None,
        access_log: bool = True,
        builtin_routes: bool = True,
    ) -> None:
        self.name = name
        self.registry = registry if registry is not None else Registry()
        self.access_log = access_log
        self._static: dict[str, _Route] = {}
        self._patterns: list[_Route] = []
        self._middleware: list[Middleware] = []
        self._chain: RouteHandler = self._route
        self.health_checks: list[Callable[[], Awaitable[dict[str, Any]] | dict[str, Any]]] = []
        self._requests = self.registry.counter(
            "http_requests_total", "HTTP requests answered.", ("method", "route", "status")
        )
        self._latency = self.registry.histogram(
            "http_request_duration_seconds", "Time to answer, by route.", ("route",)
        )
        if builtin_routes:
            self.get("/healthz")(self._healthz)
            self.get("/metrics")(self._metrics)

    # --- building --------------------------------------------------------------------

    def route(
        self, methods: str | Iterable[str], path: str
    ) -> Callable[[RouteHandler], RouteHandler]:
        """Register `handler` for `methods` on `path` (literal or with `{param}` segments)."""
        methods = [methods] if isinstance(methods, str) else list(methods)

        def register(handler: RouteHandler) -> RouteHandler:
            route = self._find_or_add(path)
            for method in methods:
                if method in route.handlers:
                    raise ValueError(f"{method} {path} is already routed")
                route.handlers[method] = handler
            return handler

        return register

    def _find_or_add(self, path: str) -> _Route:
        if not PARAM_RE.search(path):
            route = self._static.get(path)
            if route is None:
                route = self._static[path] = _Route(path)
            return route
        for route in self._patterns:
            if route.pattern == path:
                return route
        route = _Route(path)
        self._patterns.append(route)
        return route

    def get(self, path: str) -> Callable[[RouteHandler], RouteHandler]:
        return self.route("GET", path)

    def post(self, path: str) -> Callable[[RouteHandler], RouteHandler]:
        return self.route("POST", path)

    def put(self, path: str) -> Callable[[RouteHandler], RouteHandler]:
        return self.route("PUT", path)

    def patch(self, path: str) -> Callable[[RouteHandler], RouteHandler]:
        return self.route("PATCH", path)

    def delete(self, path: str) -> Callable[[RouteHandler], RouteHandler]:
        return self.route("DELETE", path)

    def middleware(self, fn: Middleware) -> Middleware:
        """Add `async fn(request, call_next) -> Response`; the first added runs outermost."""
        self._middleware.append(fn)
        chain: RouteHandler = self._route
        for mw in reversed(self._middleware):
            # A lambda that returns the middleware's coroutine: no extra frame per layer.
            chain = lambda request, mw=mw, call_next=chain: mw(request, call_next)  # noqa: E731
        self._chain = chain
        return fn

    def health_check(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Add a check to /healthz: returns a dict merged into the answer, or raises."""
        self.health_checks.append(fn)
        return fn

    # --- serving ---------------------------------------------------------------------

    async def __call__(self, request: Request) -> Response:
        start = time.perf_counter()
        rid = request.headers.get("x-request-id")
        if rid is None or REQUEST_ID_RE.fullmatch(rid) is None:
            rid = os.urandom(16).hex()  # as random as uuid4, without building a UUID
        request.request_id = rid
        token = request_id.set(rid)
        try:
            try:
                response = await self._chain(request)
            except Problem as exc:
                response = exc.response()
            except HttpError as exc:
                response = problem(exc.status, detail=exc.reason)
            except Exception:
                log.exception("unhandled error in %s %s", request.method, request.path)
                response = problem(500, detail="unexpected error; see the server log")
            response.headers.add("X-Request-ID", rid)
            elapsed = time.perf_counter() - start
            route = request.state.get("route", "<unmatched>")
            self._requests.inc(method=request.method, route=route, status=str(response.status))
            self._latency.observe(elapsed, route=route)
            if self.access_log:
                # Health probes arrive every few seconds from every gateway and lb: logging
                # them at INFO would bury the requests a learner is watching for.
                quiet = route in QUIET_ROUTES and response.status < 400
                level = logging.DEBUG if quiet else logging.INFO
                access_log.log(
                    level,
                    '%s "%s %s" %d %.1fms',
                    request.peer[0] if request.peer else "-",
                    request.method,
                    request.target,
                    response.status,
                    elapsed * 1000,
                )
            return response
        finally:
            request_id.reset(token)

    def resolve(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        """The route for `path` (or None) and its parameters."""
        route = self._static.get(path)
        if route is not None:
            return route, {}
        segments = decoded_segments(path)
        for route in self._patterns:
            params = route.match(segments)
            if params is not None:
                return route, params
        return None, {}

    async def _route(self, request: Request) -> Response:
        route, params = self.resolve(request.method, request.path)
        if route is None:
            return problem(404, detail=f"no route for {request.path}")
        request.state["route"] = route.pattern
        request.params = params
        handler = route.handlers.get(request.method)
        if handler is None and request.method == "HEAD":
            handler = route.handlers.get("GET")
        if handler is None:
            return problem(
                405,
                detail=f"{request.method} is not allowed on {route.pattern}",
                headers=[("Allow", route.allow())],
            )
        return await handler(request)

    # --- built-in routes -------------------------------------------------------------

    async def _healthz(self, request: Request) -> Response:
        answer: dict[str, Any] = {"status": "ok", "app": self.name}
        for check in self.health_checks:
            try:
                result = check()
                if isinstance(result, Awaitable):
                    result = await result
                answer.update(result or {})
            except Exception as exc:
                return json_response({**answer, "status": "failing", "error": str(exc)}, status=503)
        return json_response(answer)

    async def _metrics(self, request: Request) -> Response:
        return Response(
            200, [("Content-Type", METRICS_CONTENT_TYPE)], self.registry.render().encode()
        )
