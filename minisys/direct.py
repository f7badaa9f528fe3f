"""Serving a connection on a raw non-blocking socket instead of a transport and protocol.

Place on the journey: under a server's protocol code, where `minisys/server.py`'s
`Connection` would be. mq serves its clients this way (`mq/server.py`); any request/reply
server whose requests are small and frequent can. `DirectServer` accepts (a `Server`
that keeps the READY line, inherited sockets, the connection limit, the idle sweep and
the drain) and hands each socket to a `DirectConnection`, which reads, calls `on_data`,
and sends what the protocol writes at once:

    socket readable ─▶ os.read(fd, 64 KiB) ─▶ on_data(bytes)
        protocol calls write(reply) ─▶ os.write(fd) now
            all sent                 → nothing kept
            partly sent / would block → keep the rest, wait until writable
                                        (kept > WRITE_HIGH_WATER: stop reading until all sent)

`minisys/poller.py` calls the read callback straight from epoll when the loop was made by
its `new_event_loop` (`python -m mq` installs `DirectLoopPolicy`); on any other loop
(tests' plain `asyncio.run`, no epoll) the same code runs on `loop.add_reader`.

What it costs, measured with callgrind on the mq server (greenstalk put → reserve →
delete, one client, instructions per job, i.e. per three request/reply round trips):

                                                              per job
    mq on asyncio Protocols (`minisys.server.Connection`)        176 k
    mq on this module, on poller.py's DirectSelector             147 k
      + its tick a poller alarm, not an asyncio timer            135 k
      + on poller.py's ServingSelector                           127 k
      + parser memo, inline queue paths, inline send (mq's own)  115 k
      + ServingSelector's waiting again inside its select        110 k
      (re-measured at the start of the next pass)                111.6 k
      + the leaner wait loop and os.read / os.write (below)      107.1 k
      + mq's own cuts that pass (mq/README.md)                    96.1 k
    bare asyncio Protocol server, canned replies, no queue       103 k
    bare server on this module, canned replies, no queue          74 k
      the same on ServingSelector                                 60.0 k
      + ServingSelector's leaner wait loop                        57.5 k
      + os.read / os.write instead of recv_into / send            52.8 k
    the floor: one epoll loop, no asyncio, no parser (bench)      23.1 k

A transport's read is selector → Handle → `_run_once` → `_read_ready` → `get_buffer` →
`recv_into` → `buffer_updated` → `data_received`; its write goes through `write` and the
transport's state checks. Here the read is one method and the write one `os.write`.

What you give up against a Protocol: TLS (`start_tls`), `sendfile`, writes queued by
asyncio on your behalf; the contract is the same as `Connection`'s (the hooks
`on_connect`, `on_data`, `on_eof`, `on_close`, `refusal`, `on_idle`, `on_drain`; the
helpers `write`, `close`, `abort`, `set_busy`, `pause_reading`, `resume_reading`), so a
protocol moves between the two by changing its base class. `on_close` runs in a later
loop turn, as a Protocol's `connection_lost` does, so a close never re-enters the code
that called it.

Simpler than the real thing: beanstalkd and Redis keep per-connection state machines for
partial reads and writes in C around their own epoll loop; we keep only the unsent rest
of a write, and let the protocol's parser keep the unparsed rest of a read.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket

from minisys.logs import get_logger
from minisys.poller import make_poller
from minisys.reads import READ_BUFFER_BYTES
from minisys.server import LISTEN_BACKLOG, ConnectionHooks, Server

log = get_logger("minisys.direct")

# Unsent reply bytes a connection may hold before it stops reading its peer's requests
# (asyncio's default high-water mark): a client that does not read its replies cannot
# make us buffer without bound, while its kernel buffers and TCP flow control push back.
WRITE_HIGH_WATER = 64 * 1024

# Connections accepted per wake-up of the listening socket, so that a burst of new
# clients cannot starve the established ones.
ACCEPT_BURST = 128

# Out of descriptors or memory: stop accepting this long, as asyncio does (the clients
# wait in the kernel's backlog meanwhile).
ACCEPT_RETRY_DELAY = 1.0

# accept() errors that mean "the process is out of a resource", not "this client failed".
RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

# Most bytes one read takes (minisys/reads.py's bound: below glibc's mmap threshold).
READ_BYTES = READ_BUFFER_BYTES

# Reads are `os.read` on the descriptor: it returns the bytes object `on_data` wants (a
# 64 KiB allocation shrunk to what came, below glibc's mmap threshold), where
# `sock.recv_into` + a memoryview slice + `tobytes` parse an argument tuple and copy once
# more (the lb measured the same for its splice).
_read = os.read
# Writes likewise: `os.write` takes the bytes as they are, `sock.send` parses "y*|i".
_write = os.write

# Errors of a non-blocking socket call that only mean "not now".
RETRY = (BlockingIOError, InterruptedError)


class DirectConnection(ConnectionHooks):
    """One accepted connection on a raw socket. Subclasses implement `on_data`.

    The same hooks (`ConnectionHooks`) and helpers as `minisys.server.Connection`.
    """

    sock: socket.socket | None = None
    _pending: bytearray | None = None  # unsent bytes, waiting for writability
    _reading: bool = False  # registered with the poller for reads
    _paused: bool = False  # the protocol asked to stop reading
    _eof: bool = False  # the peer finished sending

    # --- helpers ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send now; what the kernel does not take is kept and sent when it can."""
        if self._closing:
            return
        pending = self._pending
        if pending is not None:
            pending += data
            if len(pending) > WRITE_HIGH_WATER:
                self._update_reading()
            return
        try:
            sent = _write(self.fd, data)
        except RETRY:
            sent = 0
        except OSError as exc:
            self._lost(exc)
            return
        if sent < len(data):
            self.keep_unsent(data, sent)

    def keep_unsent(self, data: bytes, sent: int) -> None:
        """The kernel took only `sent` bytes of `data`: keep the rest until writable.

        For a protocol that calls `sock.send` itself on its hottest path (a method call
        saved per reply); it must call `write` instead while `_pending` is not None.
        """
        self._pending = bytearray(memoryview(data)[sent:])
        self.poller.add_writer(self.fd, self._writable)
        if len(self._pending) > WRITE_HIGH_WATER:
            self._update_reading()

    def close(self) -> None:
        """Close once what is held is sent (at once if nothing is)."""
        if self._closing or self.sock is None:
            return
        self._closing = True
        self._update_reading()
        if self._pending is None:
            self._finish(None)

    def abort(self) -> None:
        """Close at once, dropping unsent bytes (used when a drain runs out of time)."""
        if self.sock is not None:
            self._closing = True
            self._finish(None)

    def set_busy(self, flag: bool) -> None:
        """Mark a request as in flight (True) or finished (False)."""
        self.busy = flag
        if not flag and self.server.draining:
            self.on_drain()

    def pause_reading(self) -> None:
        """Stop reading requests (e.g. while too much input is buffered)."""
        self._paused = True
        self._update_reading()

    def resume_reading(self) -> None:
        self._paused = False
        self._update_reading()

    # --- plumbing ---------------------------------------------------------------------

    def start(self, server: Server, sock: socket.socket, peer: tuple | str, poller) -> None:
        """Begin serving an accepted, registered, non-blocking socket."""
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer or ("", 0)
        self.poller = poller
        self.loop = server.loop  # type: ignore[attr-defined]
        self._update_reading()
        self.on_connect()

    def _update_reading(self) -> None:
        # Read while open, not paused, not past EOF, and not holding too much output.
        want = not (self._closing or self._paused or self._eof) and (
            self._pending is None or len(self._pending) <= WRITE_HIGH_WATER
        )
        if want != self._reading and self.sock is not None:
            self._reading = want
            if want:
                self.poller.add_reader(self.fd, self._readable)
            else:
                self.poller.remove_reader(self.fd)

    def _readable(self) -> None:
        """The socket has bytes, EOF or an error. Runs once per read; may be spurious."""
        sock = self.sock
        if sock is None or not self._reading:
            return
        try:
            data = _read(self.fd, READ_BYTES)
        except RETRY:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if data:
            self._activity += 1
            self.on_data(data)
            return
        self._eof = True
        self._update_reading()
        if not self.on_eof():
            self.close()

    def _writable(self) -> None:
        pending = self._pending
        if pending is None or self.sock is None:
            return
        try:
            sent = _write(self.fd, pending)
        except RETRY:
            return
        except OSError as exc:
            self._lost(exc)
            return
        del pending[:sent]
        if pending:
            return
        self._pending = None
        self.poller.remove_writer(self.fd)
        if self._closing:
            self._finish(None)
        else:
            self._update_reading()
            self.on_sent()

    def on_sent(self) -> None:
        """Everything kept unsent has now gone (the connection is not closing).

        For a protocol that stopped its own work while the peer was slow to read: the
        RESP server carries on here with the commands that waited in its parser."""

    def _lost(self, exc: Exception) -> None:
        """A reset or error: the connection is gone, unsent bytes with it."""
        self._closing = True
        self._finish(exc)

    def _finish(self, exc: Exception | None) -> None:
        sock = self.sock
        if sock is None:
            return
        if self._reading:
            self._reading = False
            self.poller.remove_reader(self.fd)
        if self._pending is not None:
            self._pending = None
            self.poller.remove_writer(self.fd)
        self.sock = None
        sock.close()
        self.loop.call_soon(self._closed, exc)

    def _closed(self, exc: Exception | None) -> None:
        if self.server.forget(self):  # type: ignore[arg-type]
            self.on_close(exc)


class RawServer(Server):
    """A `Server` that accepts plain non-blocking sockets itself (no Task, no transport).

    It keeps everything else the kernel does (READY line, inherited sockets, the
    connection limit, idle sweep, drain) and overrides only `listen`/`stop_listening`:

        listening socket readable ─▶ accept() up to ACCEPT_BURST connections
            each: over max_connections or draining → `refuse(sock)` (counted as refused)
                  else → non-blocking, TCP_NODELAY, `admit(sock, peer)`

    Out of descriptors or memory, it stops accepting for ACCEPT_RETRY_DELAY (the clients
    wait in the backlog). Subclasses say what a socket becomes: `DirectServer` below, and
    the lb's `Listener`, which splices it to a backend.
    """

    listening: socket.socket | None = None

    def admit(self, sock: socket.socket, peer: object) -> None:
        """Make the accepted socket a registered, started connection."""
        raise NotImplementedError

    def refuse(self, sock: socket.socket) -> None:
        """Over the limit (or draining): by default, close at once."""
        sock.close()

    async def listen(self, sock: socket.socket | None) -> str:
        """Bind (or adopt `sock`) and accept ourselves; `Server.start` does the rest."""
        self.loop = asyncio.get_running_loop()
        if sock is None:
            family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
            sock = socket.create_server(
                (self.config.host, self.config.port), family=family, backlog=LISTEN_BACKLOG
            )
        sock.setblocking(False)
        self.listening = sock
        self.loop.add_reader(sock.fileno(), self._accept)
        if sock.family == socket.AF_UNIX:
            return f"unix:{sock.getsockname()}"
        self.address = sock.getsockname()[:2]
        return f"{self.address[0]}:{self.address[1]}"

    def _accept(self) -> None:
        listening = self.listening
        if listening is None:
            return
        tcp = listening.family != socket.AF_UNIX
        for _ in range(ACCEPT_BURST):
            try:
                sock, peer = listening.accept()
            except RETRY:
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
            sock.setblocking(False)
            if len(self.connections) >= self.config.max_connections or self.draining:
                self.refused += 1
                self.refuse(sock)
                continue
            if tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted += 1
            self.admit(sock, peer)

    def _resume_accepting(self) -> None:
        if self.listening is not None and not self.draining:
            self.loop.add_reader(self.listening.fileno(), self._accept)

    async def stop_listening(self) -> None:
        """Stop accepting: the first step of a drain."""
        if self.listening is not None:
            self.loop.remove_reader(self.listening.fileno())
            self.listening.close()
            self.listening = None


class DirectServer(RawServer):
    """A `RawServer` whose connections are `DirectConnection`s (the protocol factory's)."""

    async def listen(self, sock: socket.socket | None) -> str:
        self.poller = make_poller(asyncio.get_running_loop())
        return await super().listen(sock)

    def admit(self, sock: socket.socket, peer: object) -> None:
        conn = self.protocol_factory()
        self.connections.add(conn)  # type: ignore[arg-type]
        conn.start(self, sock, peer, self.poller)  # type: ignore[attr-defined]

    def refuse(self, sock: socket.socket) -> None:
        """The protocol's refusal, if any, then close."""
        conn = self.protocol_factory()
        conn.server = self
        refusal = conn.refusal()
        if refusal:
            try:
                sock.send(refusal)
            except OSError:
                pass  # best effort, as a refused client may be gone already
        sock.close()
