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

A connection object handed to the listener must offer what the idle sweep and the drain
use (see `minisys.server.Connection`): `busy`, `_activity`, `_seen_activity`,
`_idle_rounds`, `on_idle()`, `on_drain()`, `abort()`, plus `start()`; it calls
`server.forget(self)` when it is closed. The listener overrides only `listen` and
`stop_listening` of `Server`; the READY line, idle sweep and drain are the kernel's.

Simpler than the real thing: HAProxy and nginx accept in a loop bounded like ours
(`tune.maxaccept`, `multi_accept`), and also pause accepting while at `maxconn` instead
of accepting and closing; we accept and close so the client sees a prompt close, as
every minisys server does.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any

from minisys.logs import get_logger
from minisys.server import (
    LISTEN_BACKLOG,
    Server,
    ServerConfig,
)

log = get_logger("lb.listener")

# Connections accepted per wake-up of the listening socket, so that a burst of new
# clients cannot starve the established ones (asyncio's own loop uses the backlog).
ACCEPT_BURST = 128

# Out of descriptors or memory: stop accepting this long, as asyncio does (the clients
# wait in the kernel's backlog meanwhile).
ACCEPT_RETRY_DELAY = 1.0

# accept() errors that mean "the process is out of a resource", not "this client failed".
RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

Accept = Callable[["Listener", socket.socket, tuple], Any]


class Listener(Server):
    """A `Server` whose accepted connections are plain sockets given to `on_accept`."""

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
        self.listening: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def listen(self, sock: socket.socket | None) -> str:
        """Bind (or adopt `sock`) and accept with our own loop; `Server.start` does the rest."""
        self.loop = asyncio.get_running_loop()
        if sock is None:
            family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
            sock = socket.create_server(
                (self.config.host, self.config.port), family=family, backlog=LISTEN_BACKLOG
            )
        sock.setblocking(False)
        self.listening = sock
        self.address = sock.getsockname()[:2]
        self.loop.add_reader(sock.fileno(), self._accept)
        return f"{self.address[0]}:{self.address[1]}"

    def _accept(self) -> None:
        listening = self.listening
        for _ in range(ACCEPT_BURST):
            try:
                sock, peer = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRORS:
                    raise
                log.warning(
                    "%s: cannot accept (%s); pausing %.0fs", self.name, exc, ACCEPT_RETRY_DELAY
                )
                self.loop.remove_reader(listening.fileno())
                self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting)
                return
            if len(self.connections) >= self.config.max_connections or self.draining:
                self.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted += 1
            conn = self.on_accept(self, sock, peer)
            self.connections.add(conn)
            conn.start()  # may close it at once (no backend): it is registered by then

    def _resume_accepting(self) -> None:
        if self.listening is not None and not self.draining:
            self.loop.add_reader(self.listening.fileno(), self._accept)

    async def stop_listening(self) -> None:
        """Stop accepting: the first step of a drain."""
        if self.listening is not None:
            self.loop.remove_reader(self.listening.fileno())
            self.listening.close()
            self.listening = None
