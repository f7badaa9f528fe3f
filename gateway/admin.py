"""The admin API: a second port for operators, never exposed to API clients.

On the request's journey this is off to the side: nothing a client sends reaches it. It
shows what the gateway is doing right now, read-only, as JSON:

    GET /                 an index of the endpoints below
    GET /routes           the route table, most specific first
    GET /upstreams        per pool: breaker state; per member: health, ejection, errors
    GET /buckets          token levels of the most recently used buckets, per limit
    GET /consumers        consumer ids and their requests in flight
    GET /config           where the configuration came from and when it was loaded
    GET /metrics          Prometheus text format (requests, latency, 429s, breakers, …)
    GET /healthz          200 while the process is up

Why a separate port: bucket levels and upstream addresses are operational detail an
attacker would enjoy, and admin traffic should never compete with (or be rate-limited
like) API traffic. Bind it to 127.0.0.1, as everything here is by default.

Simpler than the real thing: Kong's admin API also *writes* (create routes and consumers at
runtime); ours reads only — change the TOML file and send SIGHUP.
"""

from __future__ import annotations

import time
from typing import Any

from minisys.http.message import Request, Response, json_response, problem
from minisys.metrics import CONTENT_TYPE

from .breaker import STATE_VALUES
from .pipeline import Gateway

ENDPOINTS = ["/routes", "/upstreams", "/buckets", "/consumers", "/config", "/metrics", "/healthz"]


class Admin:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.loaded_at = time.time()
        self.reloads = 0
        self.last_reload_error = ""

    def reloaded(self, error: str = "") -> None:
        if error:
            self.last_reload_error = error
        else:
            self.reloads += 1
            self.loaded_at = time.time()
            self.last_reload_error = ""

    async def handle(self, request: Request, conn: Any = None) -> Response:
        if request.method not in ("GET", "HEAD"):
            return problem(
                405, detail="the admin API is read-only", headers=[("Allow", "GET, HEAD")]
            )
        path = request.path.rstrip("/") or "/"
        gw = self.gateway
        state = admin_state(gw)
        if path == "/":
            return json_response({"endpoints": ENDPOINTS})
        if path == "/routes":
            return json_response(state["routes"])
        if path == "/upstreams":
            return json_response(state["upstreams"])
        if path == "/buckets":
            return json_response(gw.limiter.levels())
        if path == "/consumers":
            return json_response({"consumers": state["consumers"], "in_flight": state["in_flight"]})
        if path == "/config":
            return json_response(
                {
                    "source": state["source"],
                    "loaded_at": self.loaded_at,
                    "reloads": self.reloads,
                    "last_reload_error": self.last_reload_error or None,
                }
            )
        if path == "/metrics":
            for name, pool in gw.pools.items():
                gw.metrics.breaker.set(STATE_VALUES[pool.breaker.state], upstream=name)
            body = gw.metrics.registry.render().encode()
            return Response(200, [("Content-Type", CONTENT_TYPE)], body)
        if path == "/healthz":
            return json_response({"status": "ok"})
        return problem(404, detail=f"no admin endpoint {path}; see /")


def admin_state(gw: Gateway) -> dict[str, Any]:
    """What the admin API shows (admin.py renders it)."""
    cfg = gw.config
    return {
        "source": cfg.source,
        "routes": [
            {
                "name": r.name,
                "host": r.host,
                "path": r.path,
                "methods": sorted(r.methods) if r.methods else None,
                "strip_prefix": r.strip_prefix,
                "upstream": r.upstream,
                "auth": r.auth,
                "consumers": sorted(r.consumers) if r.consumers else None,
            }
            for r in gw.routes.routes
        ],
        "upstreams": {name: pool.stats() for name, pool in gw.pools.items()},
        "consumers": [c.id for c in cfg.consumers],
        "in_flight": dict(gw.in_flight),
    }
