"""Balancing algorithms: given the backends that may take a connection, pick one.

Place on the journey: a client's connection has just been accepted by `lb/proxy.py`; the
pool (`lb/backend.py`) has filtered its backends down to the *eligible* ones (healthy,
enabled, not ejected, under their connection limit) and asks the algorithm to choose.
Algorithms therefore never see an unhealthy backend, which makes "never pick a dead one"
true by construction rather than by care in five places.

Each algorithm is a small pure class with one method:

    pick(candidates, key) -> candidate      (candidates is non-empty)

A candidate is anything with `name` (stable id, "host:port"), `effective_weight` (the
configured weight, scaled down during slow start) and `active` (open connections).
`key` is what hashing algorithms hash: the client's IP address.

| name        | idea                                                  | like                       |
|-------------|-------------------------------------------------------|----------------------------|
| roundrobin  | take turns, ignore weights                            | HAProxy `static-rr`, w=1   |
| weighted    | smooth weighted round robin: 5:1:1 → a a b a c a a    | nginx upstream, HAProxy rr |
| leastconn   | fewest active connections per unit of weight          | HAProxy `leastconn`        |
| p2c         | two random candidates, the less loaded one wins       | Envoy LEAST_REQUEST        |
| hash        | ring of virtual nodes keyed by client address         | nginx `hash … consistent`  |

Read next: `lb/backend.py` (what a candidate is), `lb/health.py` (what makes it eligible).

Simpler than the real thing: HAProxy's `roundrobin` uses a weighted tree so a pick is
O(log n) and supports 4095 servers; ours are O(n) per pick, which is fine for the handful
of backends a learner runs. No Maglev, no bounded-load hashing, no `first`.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from typing import Protocol


class Candidate(Protocol):
    """What an algorithm may look at."""

    @property
    def name(self) -> str: ...

    @property
    def effective_weight(self) -> float: ...

    @property
    def active(self) -> int: ...


class Algorithm(Protocol):
    """The one method every balancing algorithm has."""

    def pick(self, candidates: Sequence[Candidate], key: str = "") -> Candidate: ...


class RoundRobin:
    """Each candidate in turn. Weights are ignored: use `SmoothWeighted` for those."""

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Candidate], key: str = "") -> Candidate:
        choice = candidates[self._next % len(candidates)]
        self._next = (self._next + 1) % len(candidates)
        return choice


class SmoothWeighted:
    """nginx's smooth weighted round robin.

    Every pick adds each candidate's weight to its running score, takes the highest score
    and subtracts the total weight from the winner. Over any cycle of sum(weights) picks
    each candidate is chosen exactly `weight` times, and the picks are spread out
    (5:1:1 gives a a b a c a a, not a a a a a b c) so no backend gets a burst.
    Scores live per name, so a candidate that leaves and comes back starts from zero.
    """

    def __init__(self) -> None:
        self._score: dict[str, float] = {}

    def pick(self, candidates: Sequence[Candidate], key: str = "") -> Candidate:
        total = 0.0
        best: Candidate | None = None
        best_score = 0.0
        score = self._score
        for c in candidates:
            weight = c.effective_weight
            total += weight
            s = score.get(c.name, 0.0) + weight
            score[c.name] = s
            if best is None or s > best_score:
                best, best_score = c, s
        assert best is not None
        score[best.name] = best_score - total
        if len(score) > 2 * len(candidates):
            # Forget candidates that left, so the table is bounded by the pool size.
            names = {c.name for c in candidates}
            for name in [n for n in score if n not in names]:
                del score[name]
        return best


def load(candidate: Candidate) -> float:
    """Active connections per unit of weight: what "least loaded" compares."""
    weight = candidate.effective_weight
    return candidate.active / weight if weight > 0 else float("inf")


class LeastConnections:
    """The candidate with the fewest active connections (per unit of weight).

    Ties are broken by taking turns among the tied candidates, as HAProxy does, so an idle
    pool does not send every new connection to the first backend in the list.
    """

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, candidates: Sequence[Candidate], key: str = "") -> Candidate:
        lowest = min(load(c) for c in candidates)
        tied = [c for c in candidates if load(c) == lowest]
        self._turn = (self._turn + 1) % len(tied)
        return tied[self._turn]


class PowerOfTwoChoices:
    """Sample two distinct candidates at random and take the less loaded one.

    Almost as good as least connections at spreading load, but O(1) and free of herding:
    when a backend comes back empty, least connections would send it every new client at
    once; two random choices send it only the clients whose other draw was busier.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Candidate], key: str = "") -> Candidate:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(range(len(candidates)), 2)
        first, second = candidates[a], candidates[b]
        return second if load(second) < load(first) else first


# Points per backend on the ring. More points spread keys more evenly (the standard
# deviation of a backend's share falls like 1/sqrt(points)); ketama uses 160.
VIRTUAL_NODES = 160

# Rings are rebuilt when the candidate set changes; remember a few so that a backend
# flapping between two states does not rebuild on every pick.
RING_CACHE_SIZE = 8


def ring_hash(data: str) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process, so it cannot be used)."""
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8).digest(), "big")


class ConsistentHash:
    """A hash ring with virtual nodes, keyed by the client's address.

    Each backend owns VIRTUAL_NODES points on a 64-bit circle, placed by hashing
    "name#i". A key goes to the owner of the first point at or after hash(key). The
    points of a backend depend only on its own name, so when one of N backends leaves,
    only the keys that landed on its points move (about 1/N of them), and every other
    client keeps its backend. A ring built from the eligible candidates is the same as
    walking the full ring and skipping the ineligible ones.
    """

    def __init__(self, virtual_nodes: int = VIRTUAL_NODES) -> None:
        self.virtual_nodes = virtual_nodes
        self._rings: dict[frozenset[str], tuple[list[int], list[str]]] = {}

    def _ring(self, names: frozenset[str]) -> tuple[list[int], list[str]]:
        ring = self._rings.get(names)
        if ring is None:
            points = sorted(
                (ring_hash(f"{name}#{i}"), name)
                for name in names
                for i in range(self.virtual_nodes)
            )
            ring = ([p for p, _ in points], [n for _, n in points])
            if len(self._rings) >= RING_CACHE_SIZE:
                self._rings.clear()
            self._rings[names] = ring
        return ring

    def owner(self, names: frozenset[str], key: str) -> str:
        """The name that owns `key` on the ring made of `names`."""
        hashes, owners = self._ring(names)
        i = bisect.bisect_left(hashes, ring_hash(key))
        return owners[i % len(owners)]

    def pick(self, candidates: Sequence[Candidate], key: str = "") -> Candidate:
        by_name = {c.name: c for c in candidates}
        return by_name[self.owner(frozenset(by_name), key)]


ALGORITHMS = {
    "roundrobin": RoundRobin,
    "weighted": SmoothWeighted,
    "leastconn": LeastConnections,
    "p2c": PowerOfTwoChoices,
    "hash": ConsistentHash,
}


def make_algorithm(name: str) -> Algorithm:
    """Build an algorithm by its command-line name."""
    try:
        return ALGORITHMS[name]()
    except KeyError:
        raise ValueError(
            f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}"
        ) from None
