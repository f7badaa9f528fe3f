"""Circuit breaker: stop sending requests to an upstream that keeps failing.

On the request's journey this sits between routing and the upstream pool (upstream.py):
before picking a member, proxy.py asks the upstream's breaker `allow(now)`; after the
attempt it reports `record(success, now)`. While the breaker is open the gateway answers
`503` at once instead of making every client wait for a timeout — which also gives the
struggling upstream room to recover.

The three states, as a table (`(state, event) → state`):

    state      event       next       what it means
    ---------  ----------  ---------  ---------------------------------------------------
    closed     success     closed     normal traffic; the failure streak resets
    closed     failure     closed     one more consecutive failure
    closed     trip        open       the streak reached `failure_threshold`
    open       success     open       a late answer to a request sent before opening
    open       failure     open       ditto
    open       cooldown    half_open  `cooldown` seconds passed: let a probe through
    half_open  success     closed     the probe worked: back to normal
    half_open  failure     open       the probe failed: wait another cooldown

`trip` and `cooldown` are not reported by callers; the breaker raises them itself when a
failure completes the streak, and when `allow()` is asked after the cooldown.
In half-open at most `half_open_probes` requests are in flight; the rest get 503 too.

Pure: time is the `now` argument (monotonic seconds), so tests walk every edge with a fake
clock.

Simpler than the real thing: Hystrix/resilience4j trip on an error *ratio* over a sliding
window of calls and count slow calls as failures; Envoy's "circuit breakers" are really
concurrency limits plus outlier ejection. A consecutive-failure count teaches the idea with
the fewest moving parts.
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

SUCCESS = "success"
FAILURE = "failure"
TRIP = "trip"
COOLDOWN = "cooldown"

TRANSITIONS: dict[tuple[str, str], str] = {
    (CLOSED, SUCCESS): CLOSED,
    (CLOSED, FAILURE): CLOSED,
    (CLOSED, TRIP): OPEN,
    (OPEN, SUCCESS): OPEN,
    (OPEN, FAILURE): OPEN,
    (OPEN, COOLDOWN): HALF_OPEN,
    (HALF_OPEN, SUCCESS): CLOSED,
    (HALF_OPEN, FAILURE): OPEN,
}

# Prometheus wants numbers: the breaker-state gauge uses these.
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass
class BreakerSettings:
    failure_threshold: int = 5  # consecutive failures that open the circuit
    cooldown: float = 10.0  # seconds open before a probe is allowed
    half_open_probes: int = 1  # concurrent probes while half-open


class CircuitBreaker:
    """One breaker per upstream pool."""

    def __init__(self, settings: BreakerSettings | None = None) -> None:
        self.settings = settings or BreakerSettings()
        self.state = CLOSED
        self.failures = 0  # consecutive failures while closed
        self.opened_at = 0.0
        self.probes = 0  # probes in flight while half-open
        self.transitions = 0  # how many times the state changed (metrics, tests)

    def _fire(self, event: str) -> None:
        new = TRANSITIONS[(self.state, event)]
        if new != self.state:
            self.transitions += 1
        self.state = new

    def allow(self, now: float) -> bool:
        """May a request go to this upstream now? A True in half-open is a probe."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now - self.opened_at < self.settings.cooldown:
                return False
            self._fire(COOLDOWN)
            self.probes = 0
        if self.probes >= self.settings.half_open_probes:
            return False
        self.probes += 1
        return True

    def record(self, success: bool, now: float) -> None:
        """Report how an attempt allowed by `allow()` ended."""
        state = self.state
        if success and state == CLOSED:  # the usual report: (closed, success) -> closed
            self.failures = 0
            return
        if state == HALF_OPEN:
            self.probes = max(0, self.probes - 1)
        self._fire(SUCCESS if success else FAILURE)
        if success:
            self.failures = 0
            return
        if state == HALF_OPEN:
            self.opened_at = now
        elif state == CLOSED:
            self.failures += 1
            if self.failures >= self.settings.failure_threshold:
                self._fire(TRIP)
                self.opened_at = now
                self.failures = 0

    def retry_after(self, now: float) -> float:
        """Seconds until a probe may go through (for the 503's Retry-After)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.settings.cooldown - now)
