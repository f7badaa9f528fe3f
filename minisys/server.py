"""The life of every minisys server: bind, accept, limit, time out, drain, exit.

Every layer that listens on a socket (lb, gateway, appserver, kvcache, minidb, mq, and the
admin ports) goes through this module, so that they all behave the same way when a learner
starts them, overloads them, leaves a connection idle, or presses Ctrl-C:

    bind (or adopt an inherited socket) ─▶ print "READY <name> <host>:<port>"
        ─▶ accept connections (at most max_connections; the rest get a polite refusal)
        ─▶ close connections that stay idle longer than idle_timeout
        ─▶ on SIGTERM/SIGINT: stop accepting, let in-flight requests finish (up to
           drain_timeout), close what is left, exit 0.

A protocol (RESP, HTTP, beanstalkd, the lb's splice) subclasses `Connection` and only
implements `on_data`; it marks itself `busy` while a request is in flight so that the drain
knows what to wait for.

Why inherited sockets: the launcher binds every port before it starts the children and
passes the listening sockets down (the systemd `LISTEN_FDS` convention). A client that
connects while a server is still importing waits in the kernel's backlog instead of getting
"connection refused", and a restarted child takes over the very same socket.

Read next: `minisys/resp/server.py` and `minisys/http/server.py`, which build on this.

Simpler than the real thing: nginx and HAProxy share state between their workers and
reload their config without dropping the listening socket; our workers (lb and gateway
`--workers`, on `reuseport_sockets`) each keep their own state, and the launcher restarts a
process instead of reloading it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

from minisys.logs import get_logger, setup_logging
from minisys.reads import BufferedReads

# Re-exported: every layer imports its server settings from here.
from minisys.serverconfig import (  # noqa: F401
    LISTEN_BACKLOG,
    ServerConfig,
    add_server_arguments,
    server_config_from_args,
)
from minisys.ticker import Ticker

# systemd passes inherited sockets starting at this file descriptor (sd_listen_fds(3)).
SD_LISTEN_FDS_START = 3

log = get_logger("minisys.server")


def announce_ready(name: str, where: str) -> None:
    """Print `READY <name> <where>` for whoever started us (launcher, tests, scripts).

    One write for the whole line: with PYTHONUNBUFFERED set, `print()` writes the text and
    the newline separately, and processes sharing one pipe (lb workers) could interleave
    between the two.
    """
    sys.stdout.write(f"READY {name} {where}\n")
    sys.stdout.flush()


class ConnectionHooks:
    """What every server-side connection offers its protocol, whatever carries its bytes.

    The hooks a protocol overrides, with their defaults, and the attributes the server's
    idle sweep and drain read. `Connection` (below, on an asyncio transport) and
    `minisys.direct.DirectConnection` (on a raw socket) both build on it, so a protocol
    moves between the two by changing its base class.
    """

    server: Server
    peer: tuple | str = ("", 0)
    busy: bool = False
    _activity: int = 0
    _seen_activity: int = -1
    _idle_rounds: int = 0
    _closing: bool = False

    def on_connect(self) -> None:
        """Called once the connection is accepted and registered."""

    def on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def on_eof(self) -> bool | None:
        """The peer closed its sending side. Return True to keep our side open."""
        return None

    def on_close(self, exc: Exception | None) -> None:
        """The connection is gone (either side closed it)."""

    def refusal(self) -> bytes:
        """Bytes to send before closing a connection that is over the limit."""
        return b""

    def on_idle(self) -> None:
        """No bytes for idle_timeout while not busy: by default, hang up."""
        self.close()

    def on_drain(self) -> None:
        """Shutdown began. Idle connections close now; busy ones when they finish."""
        if not self.busy:
            self.close()

    def close(self) -> None:
        """Hang up (each carrier of the bytes does it its own way)."""
        raise NotImplementedError


class Connection(ConnectionHooks, BufferedReads):
    """One accepted connection. Subclasses implement `on_data` and the hooks they need.

    The base class does the bookkeeping every protocol shares: registering with the server,
    refusing past the connection limit, idle detection, write backpressure, and draining.
    Reads go through one reused buffer (`minisys/reads.py` says why and what it saves).
    """

    transport: asyncio.Transport | None = None

    # --- helpers --------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(data)

    def close(self) -> None:
        """Close after the write buffer is flushed."""
        if self.transport is not None and not self._closing:
            self._closing = True
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent bytes (used when a drain runs out of time)."""
        if self.transport is not None:
            self._closing = True
            self.transport.abort()

    def set_busy(self, flag: bool) -> None:
        """Mark a request as in flight (True) or finished (False)."""
        self.busy = flag
        if not flag and self.server.draining:
            self.on_drain()

    # --- asyncio.Protocol plumbing ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or ("", 0)
        server = self.server
        if len(server.connections) >= server.config.max_connections or server.draining:
            server.refused += 1
            refusal = self.refusal()
            if refusal:
                transport.write(refusal)
            self._closing = True
            transport.close()
            return
        server.connections.add(self)
        server.accepted += 1
        self.on_connect()

    def data_received(self, data: bytes) -> None:
        self._activity += 1
        self.on_data(data)

    def eof_received(self) -> bool | None:
        return self.on_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.server.forget(self):
            self.on_close(exc)

    def pause_writing(self) -> None:
        # The peer is not reading our replies fast enough. Stop reading its requests until
        # it catches up, so that neither its requests nor our replies pile up in memory.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()


class Server:
    """A listening socket plus the set of its live connections."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        protocol_factory: Callable[[], Connection],
        *,
        sock: socket.socket | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.protocol_factory = protocol_factory
        # A socket already listening (TCP or unix): mq binds before its slow imports.
        self.sock = sock
        self.connections: set[Connection] = set()
        self.draining = False
        self.accepted = 0
        self.refused = 0
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: Ticker | None = None
        self._drained: asyncio.Event | None = None
        self.address: tuple[str, int] = (config.host, config.port)

    def _make_protocol(self) -> Connection:
        conn = self.protocol_factory()
        conn.server = self
        return conn

    async def start(self) -> None:
        """Bind (or adopt a socket), start accepting, print the READY line."""
        sock = self.sock if self.sock is not None else inherited_socket(self.name)
        where = await self.listen(sock)
        if self.config.idle_timeout > 0:
            # A thread's tick, not an asyncio.sleep loop: see minisys/ticker.py for why.
            loop = asyncio.get_running_loop()
            self._sweeper = Ticker(loop, self.config.idle_timeout / 4, self._sweep_idle).start()
        announce_ready(self.name, where)
        log.info("%s listening on %s", self.name, where)

    async def listen(self, sock: socket.socket | None) -> str:
        """Start accepting on `sock` (or on a new bound socket); return where, for READY.

        This is asyncio's `create_server`: a Task and a transport per connection. A server
        with its own accept loop (the lb splices raw sockets) overrides this and
        `stop_listening`, and keeps the rest: limits, idle sweep, drain.
        """
        loop = asyncio.get_running_loop()
        if sock is None:
            self._server = await loop.create_server(
                self._make_protocol,
                host=self.config.host,
                port=self.config.port,
                backlog=LISTEN_BACKLOG,
                reuse_address=True,
            )
        elif sock.family == socket.AF_UNIX:
            self._server = await loop.create_unix_server(
                self._make_protocol, sock=sock, backlog=LISTEN_BACKLOG
            )
            return f"unix:{sock.getsockname()}"
        else:
            self._server = await loop.create_server(
                self._make_protocol, sock=sock, backlog=LISTEN_BACKLOG
            )
        self.address = self._server.sockets[0].getsockname()[:2]
        return f"{self.address[0]}:{self.address[1]}"

    async def stop_listening(self) -> None:
        """Close the listening socket (the first step of a drain)."""
        if self._server is not None:
            self._server.close()

    def forget(self, conn: Connection) -> bool:
        """A connection closed: it no longer counts, and a drain may now be complete.

        Returns whether it was still registered (so its close is handled once).
        """
        if conn not in self.connections:
            return False
        self.connections.discard(conn)
        self._maybe_drained()
        return True

    def _sweep_idle(self) -> None:
        # One tick for all connections instead of a timer per connection: every quarter of
        # the idle timeout we look at each connection's activity counter. A connection whose
        # counter did not move for four rounds in a row (and is not busy) is idle.
        for conn in list(self.connections):
            if conn.busy or conn._activity != conn._seen_activity:
                conn._seen_activity = conn._activity
                conn._idle_rounds = 0
                continue
            conn._idle_rounds += 1
            if conn._idle_rounds >= 4:
                conn.on_idle()

    def _maybe_drained(self) -> None:
        if self.draining and not self.connections and self._drained is not None:
            self._drained.set()

    async def drain_and_close(self) -> None:
        """Stop accepting; give open connections drain_timeout to finish; then cut them."""
        if self.draining:
            return
        self.draining = True
        self._drained = asyncio.Event()
        await self.stop_listening()
        if self._sweeper is not None:
            self._sweeper.stop()
        for conn in list(self.connections):
            conn.on_drain()
        self._maybe_drained()
        try:
            await asyncio.wait_for(self._drained.wait(), self.config.drain_timeout)
        except TimeoutError:
            log.warning(
                "%s: %d connections still open after %.1fs drain; closing them",
                self.name,
                len(self.connections),
                self.config.drain_timeout,
            )
            for conn in list(self.connections):
                conn.abort()
        if self._server is not None:
            await self._server.wait_closed()
        log.info("%s stopped", self.name)


def inherited_socket(name: str) -> socket.socket | None:
    """Return the listening socket the launcher passed down for `name`, if any.

    The convention (sd_listen_fds(3)): LISTEN_PID is our pid, LISTEN_FDS is how many
    sockets start at fd 3, and LISTEN_FDNAMES names them, colon-separated.
    """
    if os.environ.get("LISTEN_PID") not in (str(os.getpid()), None):
        return None
    count = os.environ.get("LISTEN_FDS")
    if not count or not count.isdigit():
        return None
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    for i in range(int(count)):
        if i < len(names) and names[i] == name:
            sock = socket.socket(fileno=SD_LISTEN_FDS_START + i)
            sock.setblocking(False)
            return sock
    return None


def reuseport_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening TCP sockets on one (host, port), each with SO_REUSEPORT, for `count`
    worker processes (lb and gateway `--workers`); port 0 picks one free port for all.

    One socket per worker rather than one shared socket: asyncio accepts every pending
    connection on each wake-up, so on a shared socket the first worker to wake takes a
    whole burst and the others idle; with SO_REUSEPORT the kernel spreads connections.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # the later sockets join the first one's port
            sock.listen(LISTEN_BACKLOG)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def wait_for_stop_signal() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (the first one; a second one exits at once)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s received: draining", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop


async def serve(
    *servers: Server,
    stop: asyncio.Event | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Start every server, wait for SIGTERM/SIGINT (or `stop`), drain them all, clean up."""
    stop = stop or wait_for_stop_signal()
    for server in servers:
        await server.start()
    await stop.wait()
    await asyncio.gather(*(server.drain_and_close() for server in servers))
    if on_stop is not None:
        await on_stop()


def run(
    main: Callable[[], Awaitable[None]],
    *,
    component: str,
    config: ServerConfig | None = None,
) -> int:
    """Run a server's async main with logging set up; return the process exit code."""
    config = config or ServerConfig()
    setup_logging(component, fmt=config.log_format, level=config.log_level)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        # The common case is "address already in use": say which address and which flag.
        print(f"{component}: cannot start: {exc}", file=sys.stderr)
        if config.port:
            print(
                f"{component}: is port {config.port} taken? choose another with --port",
                file=sys.stderr,
            )
        return 1
    return 0
