"""The splice: accept a client, connect to a backend, move bytes both ways until both end.

Place on the journey: this is where a client's TCP connection enters the stack. The
listener (`minisys/server.py`) accepts it and makes a `ClientSide`; we ask the pool
(`lb/backend.py`) for a backend, connect to it (with a timeout, retrying on another
backend if the connect fails), optionally send a PROXY v1 line (`minisys/proxyproto.py`),
and from then on copy bytes without looking at them. Next stop: the gateway.

One client connection moves through these states:

    state       event                          next        what we do
    CONNECTING  backend connected              SPLICING    send PROXY line + early bytes
    CONNECTING  connect failed / timed out     CONNECTING  mark backend, try another one
    CONNECTING  no backend free, queue has room QUEUED     wait for a slot (queue timeout)
    CONNECTING  no backend at all / tries used CLOSED      close the client
    QUEUED      a backend connection ended     CONNECTING  try again
    QUEUED      queue timeout                  CLOSED      close the client
    QUEUED      client reset                   CLOSED      free its place in the queue
    SPLICING    EOF from one side              SPLICING    pass the EOF on (half-close)
    SPLICING    EOF seen from both sides       CLOSED      close both, after flushing
    SPLICING    error or reset on one side     CLOSED      abort the other side too

Backpressure is the heart of a proxy. If the client reads slowly, every byte the backend
sends us piles up in the client transport's write buffer. So when that buffer passes its
high-water mark (`pause_writing`), we stop reading from the backend; TCP flow control then
pushes back on the backend itself. The same holds the other way round. Bytes a client
sends before its backend is connected wait in a buffer capped at EARLY_DATA_LIMIT. Memory
per connection is therefore bounded no matter how fast or slow either peer is.

Retries at L4 are safe only before any byte went upstream, i.e. while connecting: once a
request may have reached a backend we cannot know whether it acted on it. So a failed
connect is retried on another backend, up to `retries` times, and the client sees nothing
but a little latency; a backend that dies mid-connection means a closed client connection.

Simpler than the real thing: HAProxy splices with the kernel's splice(2) (zero copy) and
runs one thread per core; we copy through Python in one event loop. HAProxy can also wait
`timeout connect` and retry the *same* server; we always move on to another.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

from lb.backend import Backend, Pool
from lb.connect import open_connection
from minisys.logs import get_logger
from minisys.proxyproto import encode_v1
from minisys.reads import BufferedReads
from minisys.server import Connection

log = get_logger("lb.proxy")

# Bytes a client may send before its backend connection is up; past this we stop reading
# from it (its kernel buffer and then TCP flow control hold the rest).
EARLY_DATA_LIMIT = 64 * 1024

# Write-buffer high-water mark on both sides of a splice: above it we stop reading from
# the other side. asyncio's default is 64 KiB; a little more keeps bulk transfers moving.
SPLICE_HIGH_WATER = 256 * 1024

# Connections waiting for a backend slot (all backends at maxconn). Past this, refuse.
DEFAULT_QUEUE_SIZE = 256


@dataclass
class ProxySettings:
    """What the operator chooses on the command line."""

    connect_timeout: float = 2.0
    # Extra connect attempts on other backends after a failure (HAProxy `retries`).
    retries: int = 2
    send_proxy: bool = False
    queue_size: int = DEFAULT_QUEUE_SIZE
    queue_timeout: float = 5.0


class Balancer:
    """Everything the client connections of one lb share: pool, settings, queue, counters."""

    def __init__(self, pool: Pool, settings: ProxySettings | None = None) -> None:
        self.pool = pool
        self.settings = settings or ProxySettings()
        self.queue: collections.deque[ClientSide] = collections.deque()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.retries = 0
        self.no_backend = 0
        self.queued_total = 0
        self.queue_timeouts = 0
        self.queue_full = 0
        self.max_queue = 0

    def connection(self) -> ClientSide:
        """The protocol factory handed to `minisys.server.Server`."""
        return ClientSide(self)

    def now(self) -> float:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        return self.loop.time()

    def release(self, backend: Backend) -> None:
        """A connection to `backend` ended: one slot is free, so serve the queue."""
        backend.active -= 1
        while self.queue:
            client = self.queue[0]
            if client.closed:
                self.queue.popleft()
                continue
            now = self.now()
            if not any(b.eligible(now) for b in self.pool.backends.values()):
                return
            self.queue.popleft()
            client.leave_queue()
            client.dispatch()

    def stats(self) -> dict:
        return {
            "queue": len(self.queue),
            "max_queue": self.max_queue,
            "queued_total": self.queued_total,
            "queue_timeouts": self.queue_timeouts,
            "queue_full": self.queue_full,
            "retries": self.retries,
            "no_backend": self.no_backend,
        }


class BackendSide(BufferedReads):
    """Our connection to a backend: everything it sends goes to the client.

    Reads land in the shared buffer of `minisys/reads.py`, as the client side's do.
    """

    def __init__(self, client: ClientSide) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=SPLICE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        client = self.client
        client._activity += 1
        client.backend.bytes_out += len(data)
        client.transport.write(data)

    def eof_received(self) -> bool:
        return self.client.backend_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.backend_lost(exc)

    def pause_writing(self) -> None:
        # The backend is not reading what the client sends: stop reading the client.
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.client.closed:
            self.client.transport.resume_reading()


class ClientSide(Connection):
    """A client's connection to the lb, and the splice to its backend."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.backend: Backend | None = None
        self.upstream: asyncio.Transport | None = None
        self.early = bytearray()
        self.key = ""
        self.closed = False
        self.client_eof = False
        self.server_eof = False
        self.tried: set[str] = set()
        self.attempts = 0
        self._released = True
        self._queue_timer: asyncio.TimerHandle | None = None

    # --- accept and connect ---------------------------------------------------------

    def on_connect(self) -> None:
        self.key = str(self.peer[0])
        self.transport.set_write_buffer_limits(high=SPLICE_HIGH_WATER)
        self.dispatch()

    def dispatch(self) -> None:
        """Choose a backend and start connecting, or queue, or give up."""
        balancer = self.balancer
        now = balancer.now()
        backend = balancer.pool.choose(self.key, now, self.tried)
        if backend is None:
            if not self.tried and self._could_queue(now):
                self._enter_queue()
            else:
                balancer.no_backend += 1
                self.close()
            return
        self.attempts += 1
        self.tried.add(backend.name)
        # Count the connection against the backend while it connects, so least-connections
        # and maxconn see it at once rather than after the handshake.
        backend.active += 1
        backend.total += 1
        if backend.active > backend.max_active:
            backend.max_active = backend.active
        self.backend = backend
        self._released = False
        backend_side = BackendSide(self)
        open_connection(
            self.balancer.loop,
            backend.host,
            backend.port,
            backend_side,
            self.balancer.settings.connect_timeout,
            lambda transport, exc: self._connected(backend, transport, exc),
        )

    def _connected(
        self, backend: Backend, transport: asyncio.Transport | None, exc: OSError | None
    ) -> None:
        """The connect attempt ended: splice, or count the failure and try again."""
        if transport is None:
            self._connect_failed(backend, exc)
            return
        balancer = self.balancer
        backend.health.record_connect_success(balancer.now())
        if self.closed:
            transport.close()  # backend_lost releases the slot
            return
        self.upstream = transport
        first = b""
        if balancer.settings.send_proxy:
            first = self._proxy_line()
        if self.early:
            first += bytes(self.early)
            backend.bytes_in += len(self.early)
            self.early.clear()
            self.transport.resume_reading()
        if first:
            transport.write(first)
        if self.client_eof:
            transport.write_eof()

    def _connect_failed(self, backend: Backend, exc: BaseException) -> None:
        balancer = self.balancer
        backend.connect_failures += 1
        if backend.health.record_connect_failure(balancer.now()):
            log.warning("backend %s ejected after repeated connect failures", backend.name)
        self._release()
        log.info("connect to %s failed: %s", backend.name, exc or "timeout")
        if self.closed:
            return
        if self.attempts <= balancer.settings.retries:
            balancer.retries += 1
            self.dispatch()
        else:
            balancer.no_backend += 1
            self.close()

    def _proxy_line(self) -> bytes:
        local = self.transport.get_extra_info("sockname")
        try:
            return encode_v1(self.peer[0], self.peer[1], local[0], local[1])
        except (ValueError, TypeError, IndexError):
            return b"PROXY UNKNOWN\r\n"

    # --- the queue ------------------------------------------------------------------

    def _could_queue(self, now: float) -> bool:
        """Queue only if some backend is usable but full; queueing for a dead fleet is pointless."""
        pool = self.balancer.pool
        return any(
            b.maxconn > 0 and b.active >= b.maxconn and b.health.takes_traffic(now)
            for b in pool.backends.values()
            if b.admin.value == "ENABLED"
        )

    def _enter_queue(self) -> None:
        balancer = self.balancer
        if len(balancer.queue) >= balancer.settings.queue_size:
            balancer.queue_full += 1
            self.close()
            return
        balancer.queue.append(self)
        balancer.queued_total += 1
        balancer.max_queue = max(balancer.max_queue, len(balancer.queue))
        self._queue_timer = balancer.loop.call_later(
            balancer.settings.queue_timeout, self._queue_timed_out
        )

    def leave_queue(self) -> None:
        if self._queue_timer is not None:
            self._queue_timer.cancel()
            self._queue_timer = None

    def _queue_timed_out(self) -> None:
        self._queue_timer = None
        try:
            self.balancer.queue.remove(self)
        except ValueError:
            return
        self.balancer.queue_timeouts += 1
        self.close()

    # --- the splice -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # Overrides the base class's hook chain: this is the hottest path of the lb.
        self._activity += 1
        upstream = self.upstream
        if upstream is not None:
            self.backend.bytes_in += len(data)
            upstream.write(data)
            return
        self.on_data(data)

    def on_data(self, data: bytes) -> None:
        self.early += data
        if len(self.early) >= EARLY_DATA_LIMIT:
            self.transport.pause_reading()

    def on_eof(self) -> bool:
        """The client finished sending. Pass the EOF on and keep reading the backend."""
        self.client_eof = True
        if self.upstream is None:
            return True  # _connect passes it on once connected
        if self.server_eof:
            self._close_both()
            return True
        self.upstream.write_eof()
        return True

    def backend_eof(self) -> bool:
        """The backend finished sending. Pass it on and keep reading the client."""
        self.server_eof = True
        if self.client_eof:
            self._close_both()
            return True
        if not self.closed:
            self.transport.write_eof()
        return True

    def pause_writing(self) -> None:
        # The client is not reading what the backend sends: stop reading the backend.
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.resume_reading()

    def _close_both(self) -> None:
        self.close()
        if self.upstream is not None:
            self.upstream.close()

    def _release(self) -> None:
        """Give the backend slot back (exactly once per connect attempt)."""
        if not self._released:
            self._released = True
            self.balancer.release(self.backend)

    def backend_lost(self, exc: Exception | None) -> None:
        self._release()
        if exc is not None:
            self.abort()
        else:
            self.close()

    def on_close(self, exc: Exception | None) -> None:
        self.closed = True
        if self._queue_timer is not None:
            # Gave up while queued: free the place for someone else.
            self.leave_queue()
            self.balancer.queue.remove(self)
        if self.upstream is not None:
            if exc is not None:
                self.upstream.abort()
            else:
                self.upstream.close()

    def on_drain(self) -> None:
        # An lb that shuts down lets spliced connections finish (up to drain_timeout);
        # only connections still waiting for a backend are closed now.
        if self.upstream is None:
            self.close()

    def on_idle(self) -> None:
        self.close()
        if self.upstream is not None:
            self.upstream.close()
