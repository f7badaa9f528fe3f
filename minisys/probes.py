"""Is it up? One small probe per protocol, each asking the question its own clients ask.

A port that accepts connections is not yet a server that answers: the launcher's sockets
are bound before the child has even imported its code. So readiness is checked in the
component's own protocol:

    probe      sends                                    ready when the reply starts with
    resp       PING\\r\\n (inline, as redis-benchmark)     +PONG
    beanstalk  stats\\r\\n                                OK
    http       GET /healthz HTTP/1.1                     HTTP/1.1 200 (or HTTP/1.0 200)
    tcp        (connects, sends nothing)                 the connection is accepted

A probe never raises: it answers True or False within its timeout, so a wait loop can call
it until a deadline.

Simpler than the real thing: Kubernetes separates liveness from readiness and retries with
thresholds; the launcher uses these once at start-up and `status` uses them on demand.
"""

from __future__ import annotations

import asyncio

# A probe that hears nothing back in this long counts as "not yet".
PROBE_TIMEOUT = 2.0
# Replies are short; reading more than this means something else is listening.
PROBE_READ_LIMIT = 4096

_REQUESTS = {
    "resp": (b"PING\r\n", (b"+PONG",)),
    "beanstalk": (b"stats\r\n", (b"OK ",)),
    "http": (
        b"GET /healthz HTTP/1.1\r\nHost: minisys\r\nConnection: close\r\n\r\n",
        (b"HTTP/1.1 200", b"HTTP/1.0 200"),
    ),
}


async def probe(kind: str, host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if the server at host:port answers its protocol's ping."""
    try:
        return await asyncio.wait_for(_probe(kind, host, port), timeout)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False


async def _probe(kind: str, host: str, port: int) -> bool:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if kind == "tcp":
            return True
        request, good = _REQUESTS[kind]
        writer.write(request)
        await writer.drain()
        reply = b""
        while len(reply) < max(len(g) for g in good):
            chunk = await reader.read(PROBE_READ_LIMIT)
            if not chunk:
                break
            reply += chunk
        return reply.startswith(good)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
