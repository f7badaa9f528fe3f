"""The lb's admin endpoint: stats as JSON and Prometheus text, and runtime changes.

Place on the journey: not on it at all. This is the operator's window onto the lb
(`--admin-port`, 8070 by default), served by the shared HTTP engine (`minisys/http/`).
It reads the counters kept by `lb/proxy.py` and `lb/backend.py` and changes backends
through the pool, so drain/enable/add/remove take effect on the very next connection.

    GET    /stats                          JSON: lb counters + one object per backend
    GET    /metrics                        Prometheus text format
    GET    /healthz                        200 "ok" (the lb itself is alive)
    GET    /backends                       JSON list of backends
    GET    /backends/{host:port}           one backend, with its last checks and history
    POST   /backends                       add: body `{"address": "127.0.0.1:9000",
                                           "weight": 2, "maxconn": 0}` → 201
    DELETE /backends/{host:port}           remove (open connections finish normally)
    POST   /backends/{host:port}/drain     no new connections; existing ones finish
    POST   /backends/{host:port}/enable    back to normal (slow start, if configured)
    POST   /backends/{host:port}/disable   like drain, shown as MAINT (HAProxy's word)

    $ curl -s -XPOST localhost:8070/backends/127.0.0.1:8081/drain
    {"name":"127.0.0.1:8081","status":"DRAIN","admin":"DRAINING",...}

Errors are `application/problem+json` (404 unknown backend, 400 bad body, 405 wrong
method, 409 duplicate backend).

Simpler than the real thing: HAProxy's runtime API is a text protocol on a UNIX socket
with dozens of commands, and its stats page is HTML + CSV; ours is a handful of JSON
routes with no authentication, which is why it binds 127.0.0.1 like everything else.
"""

from __future__ import annotations

import json

from lb.backend import Admin, parse_backend
from lb.checks import HealthChecker
from lb.health import HealthSettings
from lb.proxy import Balancer
from minisys.http.message import Request, Response, json_response, problem
from minisys.http.server import http_server
from minisys.metrics import CONTENT_TYPE, Registry
from minisys.server import Server, ServerConfig

ACTIONS = {"drain": Admin.DRAINING, "enable": Admin.ENABLED, "disable": Admin.DISABLED}


class AdminApi:
    """The request handler; holds references to the live lb state."""

    def __init__(
        self,
        balancer: Balancer,
        checker: HealthChecker,
        settings: HealthSettings,
        listener: Server | None = None,
    ) -> None:
        self.balancer = balancer
        self.checker = checker
        self.settings = settings
        self.listener = listener

    async def __call__(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if parts in (["stats"], ["backends"], ["healthz"], ["metrics"], []):
            if method == "POST" and parts == ["backends"]:
                return self._add(request)
            if method not in ("GET", "HEAD"):
                return _not_allowed("GET, HEAD, POST" if parts == ["backends"] else "GET, HEAD")
            if parts == ["healthz"]:
                return Response(200, [("Content-Type", "text/plain")], b"ok\n")
            if parts == ["metrics"]:
                body = self.metrics().encode()
                return Response(200, [("Content-Type", CONTENT_TYPE)], body)
            if parts == ["backends"]:
                return json_response(self.stats()["backends"])
            return json_response(self.stats())
        if parts[0] != "backends" or len(parts) > 3:
            return problem(404, detail=f"no route for {request.path}")
        name = parts[1]
        backend = self.balancer.pool.backends.get(name)
        if backend is None:
            return problem(404, detail=f"no backend {name}")
        now = self.balancer.now()
        if len(parts) == 2:
            if method == "DELETE":
                self.balancer.pool.remove(name)
                self.checker.unwatch(name)
                return json_response(backend.snapshot(now))
            if method in ("GET", "HEAD"):
                return json_response(backend.snapshot(now))
            return _not_allowed("GET, HEAD, DELETE")
        action = ACTIONS.get(parts[2])
        if action is None:
            return problem(404, detail=f"unknown action {parts[2]!r}; use drain, enable, disable")
        if method != "POST":
            return _not_allowed("POST")
        self.balancer.pool.set_admin(name, action, now)
        return json_response(backend.snapshot(now))

    def _add(self, request: Request) -> Response:
        try:
            doc = json.loads(request.body or b"null")
            if not isinstance(doc, dict) or not isinstance(doc.get("address"), str):
                raise ValueError('body must be {"address": "host:port", "weight": N}')
            spec = doc["address"]
            for key in ("weight", "maxconn"):
                if key in doc:
                    if type(doc[key]) is not int:
                        raise ValueError(f"{key} must be an integer")
                    spec += f",{key}={doc[key]}"
            backend = parse_backend(spec, self.settings)
        except ValueError as exc:
            return problem(400, detail=str(exc))
        if backend.name in self.balancer.pool.backends:
            return problem(409, detail=f"backend {backend.name} already exists")
        try:
            self.balancer.pool.add(backend)
        except ValueError as exc:
            return problem(409, detail=str(exc))
        self.checker.watch(backend)
        return json_response(backend.snapshot(self.balancer.now()), status=201)

    def stats(self) -> dict:
        now = self.balancer.now()
        lb = self.balancer.stats()
        lb["algorithm"] = type(self.balancer.pool.algorithm).__name__
        if self.listener is not None:
            lb["active"] = len(self.listener.connections)
            lb["accepted"] = self.listener.accepted
            lb["refused"] = self.listener.refused
        backends = [b.snapshot(now) for b in self.balancer.pool.backends.values()]
        return {"lb": lb, "backends": backends}

    def metrics(self) -> str:
        """Build a fresh registry from the live counters (cheap: a few dozen lines)."""
        reg = Registry()
        stats = self.stats()
        lb = stats["lb"]
        lb_metrics = [
            ("lb_connections_active", "gauge", "Client connections open now.", "active"),
            ("lb_connections_accepted_total", "counter", "Connections accepted.", "accepted"),
            ("lb_connections_refused_total", "counter", "Refused at max-connections.", "refused"),
            ("lb_queue_length", "gauge", "Clients waiting for a backend slot.", "queue"),
            ("lb_queue_max", "gauge", "Longest the queue has been.", "max_queue"),
            ("lb_queue_timeouts_total", "counter", "Dropped after waiting.", "queue_timeouts"),
            ("lb_queue_full_total", "counter", "Clients refused: queue full.", "queue_full"),
            ("lb_retries_total", "counter", "Connects retried on another backend.", "retries"),
            ("lb_no_backend_total", "counter", "No backend could take them.", "no_backend"),
        ]  # fmt: skip
        for name, kind, help_, key in lb_metrics:
            if key in lb:
                metric = reg.counter(name, help_) if kind == "counter" else reg.gauge(name, help_)
                metric.inc(lb[key])
        per_backend = [
            ("lb_backend_active_connections", "gauge", "Open connections.", "active"),
            ("lb_backend_connections_total", "counter", "Connections sent to it.", "total"),
            ("lb_backend_bytes_in_total", "counter", "Bytes client to backend.", "bytes_in"),
            ("lb_backend_bytes_out_total", "counter", "Bytes backend to client.", "bytes_out"),
            ("lb_backend_connect_failures_total", "counter", "Failed.", "connect_failures"),
            ("lb_backend_check_failures_total", "counter", "Checks failed.", "check_failures"),
            ("lb_backend_down_transitions_total", "counter", "Went DOWN.", "down_transitions"),
            ("lb_backend_weight", "gauge", "Configured weight.", "weight"),
            ("lb_backend_effective_weight", "gauge", "After slow start.", "effective_weight"),
        ]  # fmt: skip
        for name, kind, help_, key in per_backend:
            metric = (
                reg.counter(name, help_, ["backend"])
                if kind == "counter"
                else reg.gauge(name, help_, ["backend"])
            )
            for b in stats["backends"]:
                metric.inc(b[key], backend=b["name"])
        up = reg.gauge("lb_backend_up", "1 if it may take new connections now.", ["backend"])
        status = reg.gauge("lb_backend_status", "1 for its current status.", ["backend", "status"])
        for b in stats["backends"]:
            eligible = b["admin"] == "ENABLED" and b["status"].split()[0] in ("UP",)
            up.set(1 if eligible else 0, backend=b["name"])
            status.set(1, backend=b["name"], status=b["status"])
        return reg.render()


def _not_allowed(allow: str) -> Response:
    return problem(405, detail=f"allowed: {allow}", headers=[("Allow", allow)])


def admin_server(
    config: ServerConfig,
    balancer: Balancer,
    checker: HealthChecker,
    settings: HealthSettings,
    listener: Server | None = None,
) -> Server:
    """The admin HTTP server, named `lb-admin` (its READY line says so)."""
    return http_server("lb-admin", config, AdminApi(balancer, checker, settings, listener))
