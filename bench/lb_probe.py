"""The paced (open-loop) latency probe of bench/lb.py: the latency a hop adds.

Closed-loop load (wrk at saturation) measures queueing, not the hop. So this probe sends
requests on a fixed schedule: `connections` keep-alive connections *per target*, each
sending one request every `connections / rate` seconds at a random phase, at most one in
flight (as in wrk). A latency counts from the request's *scheduled* time, so a stall
delays every request behind it as it would for real users (wrk2's correction).

Every target (direct, lb, haproxy) is probed *at the same time*, by the same process,
at the same rate: their connections are interleaved in one event loop. Whatever
slows the machine or the pacer in a given second hits all of them alike, so the
difference of their percentiles in one run is the hop's own cost. The previous probe ran
the targets one after another: a busy second during one target's turn moved its p99 by
milliseconds (it once reported haproxy 1.8 ms *faster* than direct).

The pacer is Python on a shared machine, so it also measures itself: for every request
sent on time (not catching up after a late reply) it records how late its timer fired.
A p99 lateness well below the 1 ms being judged means the schedule was kept. Next to
the latency from the schedule it reports the latency from the actual send ("service"),
which leaves the pacer's lateness in sending out.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")
# A paced run ends this long after its last scheduled request at the latest.
PACE_GRACE = 5.0
# The schedule starts this long after every connection is open.
PACE_LEAD = 0.3


class Paced(asyncio.Protocol):
    """One keep-alive connection that sends a request every `interval` seconds."""

    def __init__(self, interval: float, out: Samples) -> None:
        self.interval = interval
        self.due = self.until = 0.0
        self.out = out
        self.on_time = True  # the next send waits for its timer (not catching up)
        self.sent = 0.0
        self.buf = b""
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def begin(self, first: float, until: float) -> None:
        self.due = first
        self.until = until
        self.loop.call_at(first, self.send)

    def send(self) -> None:
        if self.due >= self.until:
            self.transport.close()
            return
        self.sent = self.loop.time()
        if self.on_time:
            self.out.lateness.append(self.sent - self.due)
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        length = CONTENT_LENGTH.search(self.buf[:head_end])
        end = head_end + 4 + (int(length.group(1)) if length else 0)
        if len(self.buf) < end:
            return
        self.buf = self.buf[end:]
        now = self.loop.time()
        self.out.scheduled.append(now - self.due)
        self.out.service.append(now - self.sent)
        self.due += self.interval
        self.on_time = now < self.due
        self.loop.call_at(max(now, self.due), self.send)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


@dataclass
class Samples:
    scheduled: list[float]
    service: list[float]
    lateness: list[float]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile in ms (nearest rank), or nan without samples."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


@dataclass
class Probe:
    """One probe run: per target p50/p99 from the schedule, p99 from the send; the pacer."""

    p50: dict[str, float]
    p99: dict[str, float]
    service_p99: dict[str, float]
    count: dict[str, int]
    pacer_p50: float
    pacer_p99: float


def probe(ports: dict[str, int], rate: float, duration: float, connections: int) -> Probe:
    """Probe every target at `rate` req/s each, all at once, for `duration` seconds."""

    async def run() -> dict[str, Samples]:
        loop = asyncio.get_running_loop()
        interval = connections / rate
        out = {name: Samples([], [], []) for name in ports}
        protocols: list[list[Paced]] = []
        for _ in range(connections):
            row = [Paced(interval, out[name]) for name in ports]
            for protocol, port in zip(row, ports.values(), strict=True):
                await loop.create_connection(lambda p=protocol: p, "127.0.0.1", port)
            protocols.append(row)
        start = loop.time() + PACE_LEAD
        until = start + duration
        for row in protocols:
            for protocol in row:
                # Each connection its own random phase. The same phase for every target's
                # i-th connection bunched the pacer's sends: its own timers ran 1.2-9.1 ms
                # late (p99) against 1.1-1.2 ms with independent phases, same minutes.
                protocol.begin(start + random.random() * interval, until)
        flat = [p for row in protocols for p in row]
        await asyncio.wait([p.done for p in flat], timeout=duration + PACE_GRACE)
        for p in flat:
            p.transport.abort()
        return out

    out = asyncio.run(run())
    lateness = [v for samples in out.values() for v in samples.lateness]
    return Probe(
        p50={name: percentile(s.scheduled, 0.50) for name, s in out.items()},
        p99={name: percentile(s.scheduled, 0.99) for name, s in out.items()},
        service_p99={name: percentile(s.service, 0.99) for name, s in out.items()},
        count={name: len(s.scheduled) for name, s in out.items()},
        pacer_p50=percentile(lateness, 0.50),
        pacer_p99=percentile(lateness, 0.99),
    )
