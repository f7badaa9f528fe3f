"""Copying bytes between a client socket and a backend socket: the lb's hot path.

Place on the journey: `lb/proxy.py` has accepted a client (`lb/listener.py`), chosen a
backend and connected to it (`lb/connect.py`). From then on every byte of the connection
passes through the two `Direction`s below, client → backend and backend → client, until
both sides have finished. Next stop: the gateway.

We work on the raw non-blocking sockets, the way HAProxy and nginx's `stream` module do,
instead of two asyncio Transport/Protocol pairs; `minisys/poller.py` says when a socket is
ready. When one side is readable:

    os.read(its descriptor) ─▶ os.write(those bytes) to the other side at once
      (SMALL_READ at a time while messages are small, SPLICE_BUFFER for bulk data)
        all written          → done; nothing is kept
        write would block    → keep the rest (≤ SPLICE_BUFFER), stop reading this side,
          (or took part)       wait until the other side is writable, write the rest,
                               then read again

Why not transports: measured with callgrind on the lb process, wrk -c50 keep-alive to
nginx, instructions per forwarded request (request and response), taking the difference
of a 2 s and an 8 s run so that connection setup cancels out:

    lb on two Transport/Protocol pairs (until this version)        36.6 k
    bare asyncio Protocol splice (bench/lb.py's `bare`)              28.9 k
    this module, sockets watched by loop.add_reader                 23.9 k
    this module, sockets served by minisys/poller.py                13.7 k

and per `Connection: close` connection (sequential clients): 602 k → 215 k (→ 179 k once
the selector waits again itself; one client's sequential keep-alive requests 38.7 k →
17.1 k). A
transport's read goes selector → `_read_ready` → `get_buffer` → `recv_into` →
`buffer_updated` → a bytes copy → `data_received` → `write` → `send`; here it is one
function. `os.splice` through a pipe (zero copy) measured the same user-space
instructions as recv_into/send (23.2 k vs 22.9 k in the prototype) and a CPU difference
within the noise with 100-byte messages, for two more descriptors per direction, so we
copy.

Why `os.read`/`os.write` on the descriptors rather than the socket's `recv_into`/`send`:
the socket methods parse their arguments from a tuple (~370 instructions a call) and
`send(view[:n])` of a reused buffer makes a memoryview slice (~475 more), while the `os`
functions take their arguments directly and `os.read` returns exactly the bytes that
arrived (a 64 KiB allocation shrunk to fit, ~600). Callgrind, a socketpair, one read
and one write of 100 bytes: 7.5 k → 6.5 k instructions; the lb per sequential
keep-alive request 17.1 k → 15.0 k. The syscalls are the same (`read` on a TCP socket
is `recv` without flags); the socket objects stay for shutdown, linger and close. Asking
for SMALL_READ bytes while the messages are small keeps even that allocation in Python's
own allocator: 14.9 k → 14.4 k per sequential request, 9.65 k → 9.2 k under wrk -c25.

Backpressure: a side is read only while nothing waits to be sent to the other side. So per
direction at most one read (SPLICE_BUFFER) waits in our memory; the rest stays in kernel
buffers and TCP flow control pushes back on the sender. Half-close: EOF from one side is
passed on as `shutdown(SHUT_WR)` once everything before it was sent; the other direction
goes on. A reset or error on either side resets the other (SO_LINGER 0, as HAProxy's
`nolinger`), so a backend that crashed is seen as one by the client.

    Direction state  event                           next       what we do
    READING          bytes, all sent                 READING
    READING          bytes, send would block         WAITING    keep the rest, stop reading
    WAITING          other side writable, all sent   READING    read again
    READING          EOF                             DONE       shutdown(SHUT_WR) the other side
    WAITING          all sent, EOF seen before*      DONE       shutdown(SHUT_WR) the other side
    any              reset / error on either socket  (both closed with RST)
    DONE, DONE       (both directions)               closed     close both sockets

    * a client that sent its bytes and EOF before its backend was connected; otherwise
      EOF is seen only while READING (a WAITING side is not read).

Simpler than the real thing: HAProxy keeps a 16 KiB buffer per direction and uses
splice(2) through a pool of pipes for large transfers; we copy each read (up to 64 KiB)
through a bytes object and never zero-copy.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Callable
from os import read, write
from typing import TYPE_CHECKING

from lb.backend import Backend
from minisys.poller import LoopPoller
from minisys.reads import READ_BUFFER_BYTES

if TYPE_CHECKING:  # defined only where there is epoll (Linux)
    from minisys.poller import DirectSelector

# Most bytes one read takes, and so the most one direction keeps in our memory while the
# other side cannot take them (we stop reading until they are sent): the size every
# minisys socket reads with (`minisys/reads.py`).
SPLICE_BUFFER = READ_BUFFER_BYTES

# What a read asks for while the messages are small: the largest bytes object Python's
# small-object allocator serves (≤ 512 bytes with its header). A read of SPLICE_BUFFER
# mallocs 64 KiB, which glibc then shrinks to fit and later frees: ~585 instructions more
# per read, and glibc's free-list consolidation besides. A read that fills SMALL_READ
# switches its direction to SPLICE_BUFFER (bulk data), a read of ≤ SMALL_READ back.
SMALL_READ = 512 - sys.getsizeof(b"")

# SO_LINGER on, 0 seconds: close() sends an RST instead of a FIN.
RESET_ON_CLOSE = struct.pack("ii", 1, 0)

# Errors of a non-blocking socket call that only mean "not now".
RETRY = (BlockingIOError, InterruptedError)


class Direction:
    """Bytes from `src` to `dst`: one half of a splice."""

    __slots__ = (
        "done",
        "dst",
        "dst_fd",
        "eof",
        "moved",
        "pending",
        "poller",
        "reading",
        "size",
        "splice",
        "src",
        "src_fd",
        "waiting",
    )

    def __init__(self, splice: Splice, src: socket.socket, dst: socket.socket) -> None:
        self.splice = splice
        self.poller = splice.poller
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.pending = bytearray()  # sent to dst once it is writable; ≤ SPLICE_BUFFER
        self.size = SMALL_READ  # how much the next read asks for
        self.reading = False  # registered to read src
        self.waiting = False  # registered to write the pending bytes to dst
        # Bytes read from src: the idle sweep watches it, and it is the backend's bytes_in
        # (client → backend) or bytes_out for this connection (see Backend.bytes_in).
        self.moved = 0
        self.eof = False  # src sent EOF
        self.done = False  # EOF passed on to dst

    def readable(self) -> None:
        """src has bytes (or EOF, or an error): pass them on. Runs once per read."""
        size = self.size
        try:
            data = read(self.src_fd, size)
        except RETRY:
            return
        except OSError as exc:
            self.splice.fail(exc)
            return
        if not data:
            self.end()
            return
        n = len(data)
        if n == size:
            self.size = SPLICE_BUFFER  # it filled the read: more may be coming, read big
        elif size != SMALL_READ and n <= SMALL_READ:
            self.size = SMALL_READ  # small messages again
        self.moved += n
        try:
            sent = write(self.dst_fd, data)
        except RETRY:
            sent = 0
        except OSError as exc:
            self.splice.fail(exc)
            return
        if sent < n:
            self.pending += data[sent:]
            self.wait_for_dst()

    def forward(self, data: bytes) -> None:
        """Send bytes that did not come from src (the PROXY line, early bytes)."""
        try:
            sent = write(self.dst_fd, data)
        except RETRY:
            sent = 0
        except OSError as exc:
            self.splice.fail(exc)
            return
        if sent < len(data):
            self.pending += data[sent:]
            self.wait_for_dst()

    def wait_for_dst(self) -> None:
        """dst's kernel buffer is full: stop reading src until what we hold is sent."""
        self.stop_reading()
        self.waiting = True
        self.poller.add_writer(self.dst_fd, self.writable)

    def writable(self) -> None:
        try:
            sent = write(self.dst_fd, self.pending)
        except RETRY:
            return
        except OSError as exc:
            self.splice.fail(exc)
            return
        del self.pending[:sent]
        if self.pending:
            return
        self.waiting = False
        self.poller.remove_writer(self.dst_fd)
        if self.eof:
            self.pass_eof()
        else:
            self.start()

    def start(self) -> None:
        if not self.pending and not self.eof:
            self.reading = True
            self.poller.add_reader(self.src_fd, self.readable)

    def stop_reading(self) -> None:
        # Only what is registered is removed: asyncio's remove_reader of an unregistered
        # descriptor raises and catches two KeyErrors (with formatted messages) inside.
        if self.reading:
            self.reading = False
            self.poller.remove_reader(self.src_fd)

    def unregister(self) -> None:
        self.stop_reading()
        if self.waiting:
            self.waiting = False
            self.poller.remove_writer(self.dst_fd)

    def end(self) -> None:
        """src finished sending: pass the EOF on once everything before it is sent."""
        self.stop_reading()
        self.eof = True
        if not self.pending:
            self.pass_eof()

    def pass_eof(self) -> None:
        self.done = True
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # dst is gone already; its own read reports how
        self.splice.direction_done()


class Splice:
    """Both directions between a client and a backend socket, and how they end.

    `on_close(exc)` is called exactly once, when both sockets are closed: `exc` is None
    after a clean end (both EOFs passed on) or a `close()`, else the error that reset it.
    """

    def __init__(
        self,
        poller: DirectSelector | LoopPoller,
        client: socket.socket,
        backend: socket.socket,
        counter: Backend,
        on_close: Callable[[BaseException | None], None],
    ) -> None:
        self.poller = poller
        self.client = client
        self.backend = backend
        self.on_close = on_close
        self.closed = False
        self.counter = counter  # the backend whose byte counts /stats shows
        self.up = Direction(self, client, backend)
        self.down = Direction(self, backend, client)
        counter.live.add(self)

    def start(self, first: bytes = b"", client_eof: bool = False) -> None:
        """Send `first` to the backend, then copy both ways (`client_eof`: it already ended)."""
        if first:
            self.up.forward(first)
        if client_eof:
            self.up.end()
        if not self.closed:
            self.up.start()
            self.down.start()

    @property
    def activity(self) -> int:
        return self.up.moved + self.down.moved

    def buffered(self) -> tuple[int, int]:
        """Bytes held for (the backend, the client): each at most SPLICE_BUFFER."""
        return len(self.up.pending), len(self.down.pending)

    def direction_done(self) -> None:
        if self.up.done and self.down.done:
            self.close()

    def fail(self, exc: BaseException) -> None:
        """A reset or error on either socket: reset the other one too."""
        self._close(exc, reset=True)

    def close(self) -> None:
        """Close both sockets now (FIN); bytes still held are dropped."""
        self._close(None, reset=False)

    def abort(self) -> None:
        """Reset both sockets (a drain that ran out of time)."""
        self._close(None, reset=True)

    def _close(self, exc: BaseException | None, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.up.unregister()
        self.down.unregister()
        counter = self.counter
        counter.live.discard(self)
        counter.done_in += self.up.moved
        counter.done_out += self.down.moved
        for sock in (self.client, self.backend):
            if reset:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
                except OSError:
                    pass
            sock.close()
        self.on_close(exc)
