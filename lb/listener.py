"""Accepting clients without a Task or a transport per connection.

Place on the journey: the very first thing a client's TCP connection meets. The kernel
completes the handshake and queues the connection on the listening socket; we `accept()`
it and hand the plain non-blocking socket to `lb/proxy.py`, which connects to a backend
and splices (`lb/splice.py`).

Every other minisys server listens through `minisys.server.Server`, i.e. asyncio's
`create_server`, which for each accepted connection starts a Task (a coroutine that
builds a transport) and then a transport with its protocol. The lb splices raw sockets,
so it needs neither; this `Listener` is a `Server` that keeps everything else the kernel
does — the READY line, inherited sockets, the connection limit, the idle sweep, the
drain on SIGTERM — and replaces only the accept:

    listening socket readable ─▶ accept() up to ACCEPT_BURST connections
        each: over max_connections or draining → close at once (counted as refused)
              else → setblocking(False), TCP_NODELAY, `on_accept(listener, sock, peer)`
                     makes the connection object, which is registered, then `start()`ed

Measured with callgrind before this module existed (lb/README.md): a minimal
accept-answer-close server costs 280 k instructions per connection with `create_server`
and 227 k with an accept loop like this one that still built a transport.

The accept loop itself is the kernel's `minisys.direct.RawServer` (mq's `DirectServer`
is the other one); the lb says only what an accepted socket becomes. A connection object
handed to the listener must offer what the idle sweep and the drain use (see
`minisys.server.ConnectionHooks`): `busy`, `_activity`, `_seen_activity`,
`_idle_rounds`, `on_idle()`, `on_drain()`, `abort()`, plus `start()`; it calls
`server.forget(self)` when it is closed.

Simpler than the real thing: HAProxy and nginx accept in a loop bounded like ours
(`tune.maxaccept`, `multi_accept`), and also pause accepting while at `maxconn` instead
of accepting and closing; we accept and close so the client sees a prompt close, as
every minisys server does.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

# Re-exported: the bounds of the accept loop are the kernel's.
from minisys.direct import ACCEPT_BURST, ACCEPT_RETRY_DELAY, RawServer  # noqa: F401
from minisys.server import ServerConfig

Accept = Callable[["Listener", socket.socket, tuple], Any]


class Listener(RawServer):
    """A `RawServer` whose accepted connections are plain sockets given to `on_accept`."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        on_accept: Accept,
        *,
        sock: socket.socket | None = None,
    ) -> None:
        super().__init__(name, config, lambda: None, sock=sock)  # type: ignore[arg-type,return-value]
        self.on_accept = on_accept

    def admit(self, sock: socket.socket, peer: object) -> None:
        conn = self.on_accept(self, sock, peer)  # type: ignore[arg-type]
        self.connections.add(conn)
        conn.start()  # may close it at once (no backend): it is registered by then
