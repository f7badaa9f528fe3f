"""A job and the table of its life: ready, reserved, delayed, buried.

On the request's journey: the appserver's `put` creates a `Job` in the `emails` tube, a
worker's `reserve` hands it out, and `delete` ends it. Every way a job moves between its
four states is one row of `TRANSITIONS` below; `queue.py` consults the table before it moves
a job, so an impossible move is a bug caught at once rather than a corrupt queue.

    put with delay            release with delay
   ----------------> [DELAYED] <-----------------.
                        |  time passes / kick    |
                        v                        |
   put             [READY] ----- reserve ----> [RESERVED] --- delete ---> (gone)
   ---------------> ^  ^  <-- release, TTR ----'  |  ^
                    |  |       expiry, close      |  | (reserve-job from any state)
                    |  '--- kick --- [BURIED] <---'  |
                    |                  |   bury      |
                    |                  '-------------'
   delete works from ready, delayed and buried too (any connection), and from reserved
   only for the connection that holds the reservation.

Simpler than the real thing: beanstalkd keeps time in nanoseconds and stores the job
struct raw in its binlog; we keep float seconds of wall-clock time (so delays survive a
restart as absolute deadlines) and journal only the fields that change.
"""

from __future__ import annotations

READY = "ready"
RESERVED = "reserved"
DELAYED = "delayed"
BURIED = "buried"
STATES = (READY, RESERVED, DELAYED, BURIED)

# (from state, event) -> to state. "new" is the state before put.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("new", "put"): READY,
    ("new", "put-delayed"): DELAYED,
    (READY, "reserve"): RESERVED,
    (DELAYED, "reserve"): RESERVED,  # reserve-job only
    (BURIED, "reserve"): RESERVED,  # reserve-job only
    (RESERVED, "release"): READY,
    (RESERVED, "release-delayed"): DELAYED,
    (RESERVED, "bury"): BURIED,
    (RESERVED, "ttr-expired"): READY,
    (RESERVED, "reserver-gone"): READY,
    (DELAYED, "delay-elapsed"): READY,
    (DELAYED, "kick"): READY,
    (BURIED, "kick"): READY,
    (READY, "delete"): "gone",
    (RESERVED, "delete"): "gone",
    (DELAYED, "delete"): "gone",
    (BURIED, "delete"): "gone",
}

# "urgent" in stats means a priority below this (beanstalkd's URGENT_THRESHOLD).
URGENT_THRESHOLD = 1024


class Job:
    """One job. `deadline` means: ready-at for a delayed job, TTR expiry for a reserved one.

    `gen` changes every time the job enters a heap, so stale heap entries (left behind
    when a job leaves a heap by another route) are recognised and skipped.
    """

    __slots__ = (
        "body",
        "buries",
        "created",
        "deadline",
        "delay",
        "gen",
        "id",
        "kicks",
        "pri",
        "releases",
        "reserver",
        "reserves",
        "state",
        "timeouts",
        "ttr",
        "tube",
    )

    def __init__(
        self,
        job_id: int,
        tube: str,
        pri: int,
        delay: int,
        ttr: int,
        body: bytes,
        created: float,
    ) -> None:
        self.id = job_id
        self.tube = tube
        self.pri = pri
        self.delay = delay
        self.ttr = ttr
        self.body = body
        self.created = created
        self.state = "new"
        self.deadline = 0.0
        self.gen = 0
        self.reserver: object | None = None
        self.reserves = 0
        self.timeouts = 0
        self.releases = 0
        self.buries = 0
        self.kicks = 0

    def move(self, event: str) -> None:
        """Apply one row of TRANSITIONS; a move the table lacks is a bug (ValueError)."""
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise ValueError(f"a {self.state} job cannot {event}") from None

    def counters(self) -> tuple[int, int, int, int, int]:
        return self.reserves, self.timeouts, self.releases, self.buries, self.kicks

    def set_counters(self, values: tuple[int, int, int, int, int]) -> None:
        self.reserves, self.timeouts, self.releases, self.buries, self.kicks = values

    def __repr__(self) -> str:
        return f"Job({self.id}, {self.tube!r}, {self.state}, pri={self.pri})"
