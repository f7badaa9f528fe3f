"""How every minisys socket reads: into one reused buffer, not a fresh 256 KiB bytes.

This sits at the very bottom of the request's journey: each hop (lb, gateway, appserver,
kvcache, minidb, mq and the clients between them) receives its bytes through here.

A plain `asyncio.Protocol` gets its data from the transport calling `sock.recv(256 KiB)`
for every read. CPython allocates a 256 KiB bytes object for that call and shrinks it to
what arrived. An allocation that big is above glibc's mmap threshold, so each read also
costs an `mmap`, an `mremap` and later an `munmap`. Measured here on a socketpair with
100-byte messages:

    sock.recv(262144)      16.6 µs per read
    sock.recv(65536)        1.7 µs
    sock.recv_into(buffer)  1.4 µs

A request/response server does at least one read per request, and a proxy two, so this is
the largest single cost asyncio adds to a small request. `asyncio.BufferedProtocol` lets
the protocol hand the transport its own buffer: the transport calls `get_buffer()`, then
`recv_into()` it, then `buffer_updated(nbytes)`. We copy out just the bytes that arrived
and pass them to `data_received`, so protocols keep the familiar `data_received(bytes)`.

One buffer per thread is enough: the copy is taken before any other code runs, so the
next read (of any connection) may overwrite the buffer.

Read next: `minisys/server.py` (`Connection` reads this way) and the clients in
`minisys/resp/client.py`, `minisys/beanstalk/client.py` and `minisys/http/client.py`. The
raw-socket layers (`minisys/direct.py`, `lb/splice.py`) skip the transport and call
`os.read(fd, n)` themselves, with n ≤ READ_BUFFER_BYTES: without a transport in between,
its one bytes object per read is cheaper than a buffer plus a copy (they say by how much).

Simpler than the real thing: nginx and Redis keep a growing buffer per connection and parse
in place; we copy each read once into a bytes object, which keeps every parser simple.
"""

from __future__ import annotations

import asyncio
import threading

# Most bytes one read takes from a socket. Below glibc's 128 KiB mmap threshold, and larger
# than any one request of ours, so a big body arrives in a few reads.
READ_BUFFER_BYTES = 64 * 1024

_buffers = threading.local()


def read_buffer() -> memoryview:
    """This thread's read buffer (READ_BUFFER_BYTES). Whoever reads into it must copy or
    send what arrived before control goes back to the loop: the next read overwrites it."""
    view = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(READ_BUFFER_BYTES))
    return view


class BufferedReads(asyncio.BufferedProtocol):
    """A protocol base whose reads land in the shared buffer, then go to `data_received`.

    Each protocol keeps its thread's buffer in `_view` after the first read: a
    thread-local lookup per read cost more than the copy it feeds.
    """

    _view: memoryview | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self._view
        if view is None:
            view = self._view = read_buffer()
        return view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._view[:nbytes]))  # type: ignore[index]

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError
