"""Backend health: the rise/fall state machine, passive ejection and slow start.

Place on the journey: before `lb/proxy.py` sends a client to a backend, the pool asks each
backend's `HealthState` whether it may take traffic *now*. Two kinds of evidence feed it:

* **active checks** (`lb/checks.py` probes every `interval`: a TCP connect, or an HTTP
  `GET /healthz` that must answer 2xx/3xx) go through the rise/fall table below;
* **passive signals** from real traffic: when `eject_after` connects in a row fail, the
  backend is ejected for a cool-down (longer each time it is ejected again), without
  waiting for the next active check. That is what makes a killed backend stop receiving
  clients within one connect attempt rather than `fall × interval`.

The active state machine, as HAProxy runs it (`rise` 2, `fall` 3 by default):

    state        event  next         note
    UP           ok     UP
    UP           fail   FAILING      count = 1; at `fall` failures → DOWN
    FAILING      ok     UP           one success is enough to stay up
    FAILING      fail   FAILING      count + 1
    DOWN         ok     RECOVERING   count = 1; at `rise` successes → UP
    DOWN         fail   DOWN
    RECOVERING   ok     RECOVERING   count + 1
    RECOVERING   fail   DOWN         one failure sends it back

UP and FAILING take traffic; DOWN and RECOVERING do not. HAProxy shows the transitional
states as "UP 1/3" and "DOWN 1/2"; so does our stats page.

**Slow start**: a backend that just came back (from DOWN, from an ejection, or from being
disabled by the admin) has cold caches and maybe a JIT to warm. For `slow_start` seconds
its weight ramps linearly from `SLOW_START_MIN` to 100 %. Never at lb start: a fresh lb
with a healthy fleet should use all of it at once.

Time is a parameter (`now`) everywhere; nothing here sleeps or imports asyncio.

Simpler than the real thing: no `fastinter` (faster checks while transitioning), no
agent checks, no max-ejection-percent or panic threshold (if every backend is unhealthy,
the lb refuses rather than fails open), and slow start ramps the weight only, not the
per-backend connection limit.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field


class Health(enum.Enum):
    UP = "UP"
    FAILING = "FAILING"
    DOWN = "DOWN"
    RECOVERING = "RECOVERING"


OK, FAIL = True, False

TRANSITIONS: dict[tuple[Health, bool], Health] = {
    (Health.UP, OK): Health.UP,
    (Health.UP, FAIL): Health.FAILING,
    (Health.FAILING, OK): Health.UP,
    (Health.FAILING, FAIL): Health.FAILING,
    (Health.DOWN, OK): Health.RECOVERING,
    (Health.DOWN, FAIL): Health.DOWN,
    (Health.RECOVERING, OK): Health.RECOVERING,
    (Health.RECOVERING, FAIL): Health.DOWN,
}

# A transitional state is promoted once its count reaches the threshold named here.
PROMOTIONS = {Health.FAILING: ("fall", Health.DOWN), Health.RECOVERING: ("rise", Health.UP)}

TAKES_TRAFFIC = frozenset({Health.UP, Health.FAILING})

# Checks and transitions remembered per backend for the stats page; older ones are dropped.
HISTORY_LENGTH = 32

# Slow start never goes below this share of the weight, so a recovering backend still
# gets the odd connection (a weight of exactly 0 would mean "never picked").
SLOW_START_MIN = 0.1

# Repeated ejections lengthen the cool-down (base × number of ejections) up to this cap,
# so a flapping backend is tried less and less often but never forgotten.
MAX_EJECTION_MULTIPLIER = 10


@dataclass
class HealthSettings:
    """How a backend's health is judged. Defaults follow HAProxy (inter 2s, rise 2, fall 3)."""

    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    # Checks of a DOWN backend may be spaced out (HAProxy's `downinter`).
    down_interval: float | None = None
    # Each delay is scaled by a random factor in [1 - jitter, 1 + jitter] so that the
    # checks of many backends (and of many lbs) do not synchronise.
    jitter: float = 0.1
    # Passive ejection: this many connect failures in a row eject the backend (0 = never).
    eject_after: int = 3
    eject_cooldown: float = 10.0
    # Slow start window in seconds (0 = off).
    slow_start: float = 0.0

    def __post_init__(self) -> None:
        if self.rise < 1 or self.fall < 1:
            raise ValueError("rise and fall must be at least 1")
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("interval and timeout must be positive")


@dataclass
class HealthState:
    """The health of one backend, driven by check results and connect outcomes."""

    settings: HealthSettings = field(default_factory=HealthSettings)
    state: Health = Health.UP
    count: int = 0
    checks: deque = field(default_factory=lambda: deque(maxlen=HISTORY_LENGTH))
    transitions: deque = field(default_factory=lambda: deque(maxlen=HISTORY_LENGTH))
    down_transitions: int = 0
    check_failures: int = 0
    connect_failures_in_row: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    ramp_start: float | None = None

    # --- active checks ---------------------------------------------------------------

    def record_check(self, ok: bool, now: float, detail: str = "") -> bool:
        """Feed one check result; return True when the backend changed UP <-> DOWN."""
        self.checks.append((now, ok, detail))
        if not ok:
            self.check_failures += 1
        before = self.state
        state = TRANSITIONS[(self.state, ok)]
        self.count = self.count + 1 if state == self.state and state in PROMOTIONS else 1
        promotion = PROMOTIONS.get(state)
        if promotion is not None:
            threshold = getattr(self.settings, promotion[0])
            if self.count >= threshold:
                state = promotion[1]
        if state not in PROMOTIONS:
            self.count = 0
        self.state = state
        went_down = before in TAKES_TRAFFIC and state not in TAKES_TRAFFIC
        came_up = before not in TAKES_TRAFFIC and state in TAKES_TRAFFIC
        if went_down:
            self.down_transitions += 1
            self.transitions.append((now, "DOWN", detail))
        if came_up:
            self.transitions.append((now, "UP", detail))
            self.start_ramp(now)
        return went_down or came_up

    def next_check_in(self, rng: random.Random) -> float:
        """Seconds until the next check, with jitter."""
        base = self.settings.interval
        if self.state == Health.DOWN and self.settings.down_interval:
            base = self.settings.down_interval
        jitter = self.settings.jitter
        return base * (1 + jitter * (2 * rng.random() - 1))

    # --- passive signals -------------------------------------------------------------

    def record_connect_failure(self, now: float) -> bool:
        """A real client's connect failed; return True if this ejected the backend."""
        self.connect_failures_in_row += 1
        after = self.settings.eject_after
        if after <= 0 or self.connect_failures_in_row < after or self.ejected(now):
            return False
        self.ejections += 1
        multiplier = min(self.ejections, MAX_EJECTION_MULTIPLIER)
        self.ejected_until = now + self.settings.eject_cooldown * multiplier
        self.connect_failures_in_row = 0
        self.transitions.append((now, "EJECTED", f"{after} connect failures in a row"))
        self.start_ramp(self.ejected_until)
        return True

    def record_connect_success(self, now: float) -> None:
        """A real client's connect succeeded: the failure streak is over."""
        self.connect_failures_in_row = 0
        if self.ejections and not self.ejected(now):
            self.ejections = 0

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until

    # --- what the pool asks ----------------------------------------------------------

    def takes_traffic(self, now: float) -> bool:
        """UP (or only FAILING so far) and not ejected."""
        return self.state in TAKES_TRAFFIC and not self.ejected(now)

    def start_ramp(self, now: float) -> None:
        """Begin slow start at `now` (on recovery, end of ejection, or re-enable)."""
        if self.settings.slow_start > 0:
            self.ramp_start = now

    def weight_factor(self, now: float) -> float:
        """Share of the configured weight to use now: 1.0 unless slow start is ramping."""
        if self.ramp_start is None:
            return 1.0
        elapsed = now - self.ramp_start
        window = self.settings.slow_start
        if elapsed >= window:
            self.ramp_start = None
            return 1.0
        return max(SLOW_START_MIN, elapsed / window)

    def label(self) -> str:
        """HAProxy-style status text: UP, DOWN, "UP 1/3" (failing), "DOWN 1/2" (recovering)."""
        if self.state == Health.FAILING:
            return f"UP {self.count}/{self.settings.fall}"
        if self.state == Health.RECOVERING:
            return f"DOWN {self.count}/{self.settings.rise}"
        return self.state.value
