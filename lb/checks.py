"""Active health checks: probe every backend on a timer and feed the result to its state.

Place on the journey: this runs beside the traffic, not in its path. One small task per
backend connects to it every `interval` (± jitter) and reports ok/fail to the backend's
`HealthState` (`lb/health.py`), which decides when UP becomes DOWN and back. The pool
(`lb/backend.py`) then stops or resumes sending it clients.

Two probes, as HAProxy offers:

* `tcp`: the TCP handshake completes within `timeout` (HAProxy's default check);
* `http:/path`: `GET /path HTTP/1.0` must answer a 2xx or 3xx status line within `timeout`
  (HAProxy's `option httpchk` accepts the same range).

When the lb sends PROXY headers, the backend expects one on every connection, checks
included (HAProxy's `check-send-proxy`), so the HTTP probe sends one too.

Simpler than the real thing: no `http-check expect` rules, no agent checks, no TLS.
"""

from __future__ import annotations

import asyncio
import os
import random

from lb.backend import Backend, Pool
from minisys.logs import get_logger
from minisys.proxyproto import encode_v1

log = get_logger("lb.checks")

# The most of a check reply we read: the status line is all we need.
CHECK_READ_LIMIT = 1024


def parse_health_spec(spec: str) -> tuple[str, str]:
    """`tcp`, `none` or `http:/path` (the --health flag) -> (kind, path)."""
    if spec in ("tcp", "none"):
        return spec, ""
    kind, _, path = spec.partition(":")
    if kind == "http" and path.startswith("/") and " " not in path and path.isascii():
        return "http", path
    raise ValueError(f"--health must be tcp, none or http:/path, not {spec!r}")


async def probe(
    backend: Backend, kind: str, path: str, timeout: float, send_proxy: bool = False
) -> tuple[bool, str]:
    """Run one check against `backend`; return (ok, short reason for the stats page)."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(backend.host, backend.port)
            if kind == "tcp":
                return True, "connected"
            request = b""
            if send_proxy:
                src = writer.get_extra_info("sockname")
                request += encode_v1(src[0], src[1], backend.host, backend.port)
            request += (
                f"GET {path} HTTP/1.0\r\nHost: {backend.name}\r\n"
                "User-Agent: minisys-lb-check\r\nConnection: close\r\n\r\n"
            ).encode("ascii")
            writer.write(request)
            line = await reader.readline()
    except TimeoutError:
        return False, "timeout"
    except ValueError:
        return False, "status line too long"
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        return False, reason.lower()
    finally:
        if writer is not None:
            writer.close()
    parts = line[:CHECK_READ_LIMIT].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return False, "not an HTTP response"
    status = int(parts[1])
    return 200 <= status < 400, f"HTTP {status}"


class HealthChecker:
    """One checking task per backend, started and stopped as backends come and go."""

    def __init__(
        self,
        pool: Pool,
        kind: str = "tcp",
        path: str = "/healthz",
        *,
        send_proxy: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.kind = kind
        self.path = path
        self.send_proxy = send_proxy
        self.rng = rng or random.Random()
        self.tasks: dict[str, asyncio.Task] = {}

    def start(self) -> None:
        for backend in list(self.pool.backends.values()):
            self.watch(backend)

    def watch(self, backend: Backend) -> None:
        if self.kind != "none" and backend.name not in self.tasks:
            self.tasks[backend.name] = asyncio.create_task(self._run(backend))

    def unwatch(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, backend: Backend) -> None:
        loop = asyncio.get_running_loop()
        health = backend.health
        # Start at a random point of the first interval so that checks spread out.
        await asyncio.sleep(self.rng.random() * health.settings.interval)
        while True:
            try:
                ok, detail = await probe(
                    backend, self.kind, self.path, health.settings.timeout, self.send_proxy
                )
            except Exception as exc:  # a bug in a probe must not stop this backend's checks
                log.exception("health check of %s crashed", backend.name)
                ok, detail = False, f"check error: {type(exc).__name__}"
            if health.record_check(ok, loop.time(), detail):
                log.warning("backend %s is now %s (%s)", backend.name, health.label(), detail)
            await asyncio.sleep(health.next_check_in(self.rng))
