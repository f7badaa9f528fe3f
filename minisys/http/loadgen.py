"""An HTTP load generator: N keep-alive connections, each sending requests back to back.

It stands at the very start of the request's journey: `python -m minisys bench` and the
benches in `bench/` use it to drive the lb, the gateway or an appserver when `wrk` is not
installed, and it reports what `wrk` does: requests per second and latency percentiles.

    python -m minisys.http.loadgen http://127.0.0.1:8080/users/1 -c 50 -d 5

Each connection is a small asyncio Protocol with a sans-I/O `ResponseParser`: on the end
of one response it records the latency and immediately writes the next request (closed
loop, one request in flight per connection, like wrk without pipelining). Callbacks, not
a coroutine per request, keep the generator's own cost low - it shares the CPU with the
server it measures.

Simpler than the real thing: wrk runs native threads and Lua scripts and corrects for
nothing either; we run on one event loop, so above roughly 20-30k req/s on one core the
generator, not the server, may be the bottleneck. Prefer wrk when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from minisys.http.client import split_url
from minisys.http.codec import EndOfMessage, ResponseHead, ResponseParser
from minisys.http.head import HttpError
from minisys.http.serialize import serialize_request

# Latency samples kept for percentiles; beyond this, reservoir sampling keeps it fair.
MAX_SAMPLES = 1_000_000
# A request still unanswered this long after the run ends counts as an error and is cut,
# so a hung server cannot hang the load generator.
GRACE_SECONDS = 10.0


@dataclass
class LoadResult:
    requests: int
    errors: int
    duration: float
    latencies: list[float] = field(repr=False)
    status_counts: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    def percentile(self, p: float) -> float:
        """Latency in seconds below which `p` percent of the sampled requests finished."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    def summary(self) -> str:
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(self.status_counts.items()))
        return (
            f"{self.requests} requests in {self.duration:.2f}s, {self.errors} errors, "
            f"{self.rps:.0f} req/s, p50 {self.p50 * 1000:.2f} ms, p90 {self.p90 * 1000:.2f} ms, "
            f"p99 {self.p99 * 1000:.2f} ms [{statuses}]"
        )


class _Recorder:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.live: set[_LoadConnection] = set()
        self._rng = random.Random(1)

    def record(self, latency: float, status: int) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if len(self.latencies) < MAX_SAMPLES:
            self.latencies.append(latency)
        else:
            slot = self._rng.randrange(self.requests)
            if slot < MAX_SAMPLES:
                self.latencies[slot] = latency


class _LoadConnection(asyncio.Protocol):
    def __init__(self, request: bytes, method: str, rec: _Recorder, done: asyncio.Future) -> None:
        self.request = request
        self.method = method
        self.rec = rec
        self.done = done
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.status = 0
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.rec.live.add(self)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.parser.expect_response(self.method)
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        parser.feed(data)
        try:
            while (event := parser.next_event()) is not None:
                if type(event) is ResponseHead:
                    self.status = event.status
                    self.keep_alive = event.keep_alive
                elif type(event) is EndOfMessage:
                    now = time.perf_counter()
                    self.rec.record(now - self.sent_at, self.status)
                    if now >= self.rec.deadline or not self.keep_alive:
                        self._finish(reconnect=self.keep_alive is False and now < self.rec.deadline)
                        return
                    self._send()
        except HttpError:
            self.rec.errors += 1
            self._finish(reconnect=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.rec.live.discard(self)
        if not self.done.done():
            self.rec.errors += 1
            self.done.set_result(True)

    def _finish(self, reconnect: bool) -> None:
        if not self.done.done():
            self.done.set_result(reconnect)
        if self.transport is not None:
            self.transport.close()


async def _worker(host: str, port: int, request: bytes, method: str, rec: _Recorder) -> None:
    loop = asyncio.get_running_loop()
    while time.perf_counter() < rec.deadline:
        done: asyncio.Future = loop.create_future()
        try:
            await loop.create_connection(
                lambda done=done: _LoadConnection(request, method, rec, done), host, port
            )
        except OSError:
            rec.errors += 1
            await asyncio.sleep(0.01)
            continue
        if not await done:
            return


async def run_load(
    host: str,
    port: int,
    path: str = "/",
    *,
    connections: int = 50,
    duration: float = 5.0,
    method: str = "GET",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> LoadResult:
    """Drive `connections` keep-alive connections for `duration` seconds."""
    items = list(headers)
    if not any(n.lower() == "host" for n, _ in items):
        items.insert(0, ("Host", f"{host}:{port}"))
    request = serialize_request(method, path, items, body)
    start = time.perf_counter()
    rec = _Recorder(start + duration)
    workers = [
        asyncio.create_task(_worker(host, port, request, method, rec)) for _ in range(connections)
    ]
    _, stuck = await asyncio.wait(workers, timeout=duration + GRACE_SECONDS)
    for conn in list(rec.live):
        if not conn.done.done():
            conn.done.set_result(False)  # counted below, not again in connection_lost
        if conn.transport is not None:
            conn.transport.abort()
    for task in stuck:
        task.cancel()
    rec.errors += len(stuck)
    elapsed = min(time.perf_counter() - start, duration + GRACE_SECONDS)
    return LoadResult(rec.requests, rec.errors, elapsed, rec.latencies, dict(rec.statuses))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minisys.http.loadgen", description=__doc__.split("\n")[0]
    )
    parser.add_argument("url", help="http://host:port/path")
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("-m", "--method", default="GET")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--body", default="", help="request body (sent with Content-Length)")
    args = parser.parse_args(argv)
    host, port, target = split_url(args.url)
    headers = []
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep:
            parser.error(f"header {h!r} is not 'Name: value'")
        headers.append((name.strip(), value.strip()))
    result = asyncio.run(
        run_load(
            host,
            port,
            target,
            connections=args.connections,
            duration=args.duration,
            method=args.method.upper(),
            headers=headers,
            body=args.body.encode(),
        )
    )
    print(result.summary())
    return 0 if result.requests else 1


if __name__ == "__main__":
    sys.exit(main())
