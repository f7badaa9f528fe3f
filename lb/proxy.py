"""A client's connection: choose a backend, connect, queue if all are full, then splice.

Place on the journey: this is where a client's TCP connection enters the stack. The
listener (`lb/listener.py`) accepts it and makes a `ClientSide`; we ask the pool
(`lb/backend.py`) for a backend, connect to it (with a timeout, retrying on another
backend if the connect fails), optionally send a PROXY v1 line (`minisys/proxyproto.py`),
and from then on `lb/splice.py` copies bytes without looking at them. Next stop: the
gateway.

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
    SPLICING    error or reset on one side     CLOSED      reset the other side too

(The SPLICING rows and backpressure live in `lb/splice.py`.) While connecting or queued,
we read the client only to notice a reset and to keep the bytes it sends early, at most
EARLY_DATA_LIMIT; then we stop reading and the kernel holds the rest. Memory per
connection is therefore bounded no matter how fast or slow either peer is.

Retries at L4 are safe only before any byte went upstream, i.e. while connecting: once a
request may have reached a backend we cannot know whether it acted on it. So a failed
connect is retried on another backend, up to `retries` times, and the client sees nothing
but a little latency; a backend that dies mid-connection means a closed client connection.

Simpler than the real thing: HAProxy runs one thread per core sharing all state; we run
one event loop per process (`--workers` for more). HAProxy can also wait
`timeout connect` and retry the *same* server; we always move on to another.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lb.backend import Backend, Pool
from lb.connect import open_connection
from lb.listener import Listener
from lb.splice import RESET_ON_CLOSE, Splice
from minisys.logs import get_logger
from minisys.poller import LoopPoller, make_poller
from minisys.proxyproto import encode_v1

if TYPE_CHECKING:  # defined only where there is epoll (Linux)
    from minisys.poller import DirectSelector

log = get_logger("lb.proxy")

# Bytes a client may send before its backend connection is up; past this we stop reading
# from it (its kernel buffer and then TCP flow control hold the rest).
EARLY_DATA_LIMIT = 64 * 1024

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
        self.poller: DirectSelector | LoopPoller | None = None  # set with the first client
        self.retries = 0
        self.no_backend = 0
        self.queued_total = 0
        self.queue_timeouts = 0
        self.queue_full = 0
        self.max_queue = 0

    def connection(self, listener: Listener, sock: socket.socket, peer: tuple) -> ClientSide:
        """What `lb/listener.py` calls with each accepted client socket."""
        if self.poller is None:
            self.loop = asyncio.get_running_loop()
            self.poller = make_poller(self.loop)
        return ClientSide(self, listener, sock, peer)

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


class ClientSide:
    """A client's connection to the lb: choose a backend, connect, queue, then splice.

    Not a `minisys.server.Connection`: the lb works on the raw socket (`lb/listener.py`
    accepts it, `lb/splice.py` copies). It offers what the listener's idle sweep and
    drain use: `busy`, `_activity`, `on_idle`, `on_drain`, `abort`.
    """

    busy = False  # a spliced connection is never "between requests": see on_drain
    _seen_activity = -1
    _idle_rounds = 0

    def __init__(
        self, balancer: Balancer, listener: Listener, sock: socket.socket, peer: tuple
    ) -> None:
        self.balancer = balancer
        self.server = listener
        self.sock = sock
        self.peer = peer
        self.key = str(peer[0])
        self.backend: Backend | None = None
        self.splice: Splice | None = None
        self.early = bytearray()
        self.watching = False  # reading the client while it waits for a backend
        self.closed = False
        self.client_eof = False
        self.tried: set[str] = set()
        self.attempts = 0
        self._released = True
        self._queue_timer: asyncio.TimerHandle | None = None

    @property
    def _activity(self) -> int:
        return self.splice.activity if self.splice is not None else len(self.early)

    # --- accept and connect ---------------------------------------------------------

    def start(self) -> None:
        """Accepted: connect at once (loopback connects finish inside `connect()`)."""
        self.dispatch()
        if self.splice is None and not self.closed:
            # Still connecting or queued: keep an eye on the client meanwhile.
            self.watching = True
            self.balancer.poller.add_reader(self.sock.fileno(), self._early_readable)

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
        open_connection(
            balancer.loop,
            backend.host,
            backend.port,
            balancer.settings.connect_timeout,
            lambda sock, exc: self._connected(backend, sock, exc),
        )

    def _connected(self, backend: Backend, sock: socket.socket | None, exc: OSError | None) -> None:
        """The connect attempt ended: splice, or count the failure and try again."""
        if sock is None:
            self._connect_failed(backend, exc)
            return
        balancer = self.balancer
        backend.health.record_connect_success(balancer.now())
        if self.closed:
            sock.close()
            self._release()
            return
        self._stop_watching()
        first = b""
        if balancer.settings.send_proxy:
            first = self._proxy_line()
        if self.early:
            first += bytes(self.early)
            backend.done_in += len(self.early)  # not read by the splice: count here
            self.early.clear()
        self.splice = Splice(balancer.poller, self.sock, sock, backend, self._spliced_closed)
        self.splice.start(first, self.client_eof)

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
        try:
            local = self.sock.getsockname()
            return encode_v1(self.peer[0], self.peer[1], local[0], local[1])
        except (OSError, ValueError, TypeError, IndexError):
            return b"PROXY UNKNOWN\r\n"

    # --- waiting for a backend ------------------------------------------------------

    def _early_readable(self) -> None:
        """Bytes (or EOF, or a reset) from a client whose backend is not connected yet."""
        try:
            data = self.sock.recv(EARLY_DATA_LIMIT - len(self.early))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        if not data:
            # A FIN may be a half-close from a client still waiting for its answer:
            # it keeps its place, and the EOF is passed on once connected.
            self.client_eof = True
            self._stop_watching()
            return
        self.early += data
        if len(self.early) >= EARLY_DATA_LIMIT:
            self._stop_watching()  # the kernel, then TCP flow control, hold the rest

    def _stop_watching(self) -> None:
        if self.watching:
            self.watching = False
            self.balancer.poller.remove_reader(self.sock.fileno())

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

    # --- the end --------------------------------------------------------------------

    def close(self) -> None:
        """Close the client (and the backend, if spliced) now."""
        if self.splice is not None:
            self.splice.close()
        elif not self.closed:
            self._stop_watching()
            self.sock.close()
            self._closed()

    def abort(self) -> None:
        """Reset both sides (a drain that ran out of time, a client reset while waiting)."""
        if self.splice is not None:
            self.splice.abort()
        elif not self.closed:
            self._stop_watching()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
            self.sock.close()
            self._closed()

    def _spliced_closed(self, exc: BaseException | None) -> None:
        self._release()
        self._closed()

    def _closed(self) -> None:
        self.closed = True
        if self._queue_timer is not None:
            # Gave up while queued: free the place for someone else.
            self.leave_queue()
            self.balancer.queue.remove(self)
        self.server.forget(self)

    def _release(self) -> None:
        """Give the backend slot back (exactly once per connect attempt)."""
        if not self._released:
            self._released = True
            self.balancer.release(self.backend)

    def on_drain(self) -> None:
        # An lb that shuts down lets spliced connections finish (up to drain_timeout);
        # only connections still waiting for a backend are closed now.
        if self.splice is None:
            self.close()

    def on_idle(self) -> None:
        self.close()
