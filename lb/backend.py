"""Backends and the pool: who may take the next connection, and the counters behind stats.

Place on the journey: `lb/proxy.py` asks `Pool.choose(key, now, exclude)` for a backend
for every new client (and again, excluding the ones already tried, when a connect
fails). The pool filters its backends down to the eligible ones and hands those to the
balancing algorithm (`lb/algorithms.py`). Health checks (`lb/checks.py`) and the admin
endpoint (`lb/admin.py`) change backends through the methods here.

A backend is eligible when all of these hold:

    admin state is ENABLED        (not DRAINING, not DISABLED by the admin)
    health takes traffic          (UP or FAILING, and not ejected; see lb/health.py)
    active < maxconn              (when it has a maxconn)

Admin states, changed only through the admin endpoint:

    state      new connections   existing connections   health checks
    ENABLED    yes               continue               run
    DRAINING   no                continue until closed  run
    DISABLED   no                continue until closed  run (HAProxy's MAINT stops them)

Removing a backend takes it out of the pool at once; connections already spliced to it
hold their own reference and finish normally. Its counters vanish from stats with it.

Simpler than the real thing: HAProxy keeps a queue per server as well as per backend,
and ramps `maxconn` during slow start; we have one lb-wide queue (`lb/proxy.py`).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from lb.algorithms import Algorithm
from lb.health import HealthSettings, HealthState

# Weights are small integers as in HAProxy (1..256); 0 would mean "never picked", which is
# what DRAINING is for.
MAX_WEIGHT = 256

# The pool holds at most this many backends: every pick is O(n) in this number.
MAX_BACKENDS = 256


class Admin(enum.Enum):
    ENABLED = "ENABLED"
    DRAINING = "DRAINING"
    DISABLED = "DISABLED"


@dataclass(eq=False)
class Backend:
    """One upstream server and its counters. `name` is "host:port" and never changes."""

    host: str
    port: int
    weight: int = 1
    maxconn: int = 0  # 0 = no per-backend limit
    health: HealthState = field(default_factory=HealthState)
    admin: Admin = Admin.ENABLED
    active: int = 0
    total: int = 0
    # Bytes of finished connections; an open one counts its own (`lb/splice.py` keeps
    # one number per read on the hot path) and is added in when asked: see bytes_in.
    done_in: int = 0  # client -> backend
    done_out: int = 0  # backend -> client
    live: set = field(default_factory=set, repr=False)  # the open splices to this backend
    connect_failures: int = 0
    max_active: int = 0
    # Set by the pool on every pick: the weight after slow start scaling.
    effective_weight: float = 1.0
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.effective_weight = float(self.weight)
        self.name = f"{self.host}:{self.port}"

    @property
    def bytes_in(self) -> int:
        """Bytes sent from clients to this backend so far (open connections included)."""
        return self.done_in + sum(splice.up.moved for splice in self.live)

    @property
    def bytes_out(self) -> int:
        """Bytes sent from this backend to clients so far (open connections included)."""
        return self.done_out + sum(splice.down.moved for splice in self.live)

    def eligible(self, now: float) -> bool:
        return (
            self.admin is Admin.ENABLED
            and self.health.takes_traffic(now)
            and (self.maxconn <= 0 or self.active < self.maxconn)
        )

    def status(self, now: float) -> str:
        """One word (plus HAProxy's n/m while transitioning) for the stats page."""
        if self.admin is Admin.DISABLED:
            return "MAINT"
        if self.admin is Admin.DRAINING:
            return "DRAIN"
        if self.health.ejected(now):
            return "EJECTED"
        return self.health.label()

    def snapshot(self, now: float) -> dict:
        """A JSON-ready view of this backend for the admin endpoint."""
        h = self.health
        return {
            "name": self.name,
            "status": self.status(now),
            "admin": self.admin.value,
            "health": h.state.value,
            "weight": self.weight,
            "effective_weight": round(self.weight * h.weight_factor(now), 3),
            "maxconn": self.maxconn,
            "active": self.active,
            "max_active": self.max_active,
            "total": self.total,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "connect_failures": self.connect_failures,
            "check_failures": h.check_failures,
            "down_transitions": h.down_transitions,
            "ejections": h.ejections,
            "last_checks": [
                {"at": round(t, 3), "ok": ok, "detail": d} for t, ok, d in list(h.checks)[-5:]
            ],
            "history": [{"at": round(t, 3), "event": e, "detail": d} for t, e, d in h.transitions],
        }


def parse_backend(spec: str, settings: HealthSettings | None = None) -> Backend:
    """Parse `host:port[,weight=N][,maxconn=N]` (the --backend flag and the admin API)."""
    address, *options = spec.strip().split(",")
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"backend {spec!r}: expected host:port[,weight=N][,maxconn=N]")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"backend {spec!r}: port out of range")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"backend {spec!r}: host must be an IP address") from None
        host = "127.0.0.1"
    backend = Backend(host, port, health=HealthState(settings or HealthSettings()))
    for option in options:
        key, _, value = option.partition("=")
        if key not in ("weight", "maxconn") or not value.isascii() or not value.isdigit():
            raise ValueError(f"backend {spec!r}: bad option {option!r}")
        if key == "weight":
            if not 1 <= int(value) <= MAX_WEIGHT:
                raise ValueError(f"backend {spec!r}: weight must be 1..{MAX_WEIGHT}")
            backend.weight = int(value)
            backend.effective_weight = float(backend.weight)
        else:
            backend.maxconn = int(value)
    return backend


class Pool:
    """The backends of one lb and the algorithm that chooses among them."""

    def __init__(self, algorithm: Algorithm, backends: Iterable[Backend] = ()) -> None:
        self.algorithm = algorithm
        self.backends: dict[str, Backend] = {}
        for backend in backends:
            self.add(backend)

    def add(self, backend: Backend) -> None:
        if backend.name in self.backends:
            raise ValueError(f"backend {backend.name} already exists")
        if len(self.backends) >= MAX_BACKENDS:
            raise ValueError(f"at most {MAX_BACKENDS} backends")
        self.backends[backend.name] = backend

    def remove(self, name: str) -> Backend:
        """Take a backend out of the pool; its open connections carry on."""
        return self.backends.pop(name)

    def get(self, name: str) -> Backend:
        return self.backends[name]

    def choose(
        self, key: str, now: float, exclude: frozenset | set = frozenset()
    ) -> Backend | None:
        """Pick an eligible backend not in `exclude` (names), or None if there is none."""
        candidates = []
        for b in self.backends.values():
            if b.eligible(now) and (not exclude or b.name not in exclude):
                b.effective_weight = b.weight * b.health.weight_factor(now)
                candidates.append(b)
        if not candidates:
            return None
        return self.algorithm.pick(candidates, key)

    def set_admin(self, name: str, admin: Admin, now: float) -> Backend:
        backend = self.backends[name]
        if admin is Admin.ENABLED and backend.admin is not Admin.ENABLED:
            backend.health.start_ramp(now)
        backend.admin = admin
        return backend
