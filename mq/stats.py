"""The YAML documents of `stats`, `stats-tube`, `stats-job` and the `list-tubes` family.

On the request's journey: an operator (or the launcher's health probe, which sends
`stats`) asks mq how it is doing; this module turns the queue's counters into the same
keys, in the same order, that beanstalkd 1.12 prints, so dashboards and client libraries
written for beanstalkd read mq unchanged:

    OK 144\\r\\n
    ---\\nid: 1\\ntube: default\\nstate: ready\\npri: 1\\nage: 0\\n ... kicks: 0\\n\\r\\n

Times on the wire are whole seconds, truncated (beanstalkd divides nanoseconds by 1e9).

Simpler than the real thing: the same fields, but `binlog-*` describe mq's single journal
file (its generation number and record counts) rather than beanstalkd's numbered segments.
"""

from __future__ import annotations

import os

from mq.job import BURIED, DELAYED, READY, RESERVED, Job
from mq.queue import Queue
from mq.tube import Tube

VERSION = "1.12-mq"
# The commands `stats` counts, in beanstalkd's order (reserve-job, kick-job and quit are
# not counted by beanstalkd either).
COUNTED_COMMANDS = (
    "put", "peek", "peek-ready", "peek-delayed", "peek-buried", "reserve",
    "reserve-with-timeout", "delete", "release", "use", "watch", "ignore", "bury", "kick",
    "touch", "stats", "stats-job", "stats-tube", "list-tubes", "list-tube-used",
    "list-tubes-watched", "pause-tube",
)  # fmt: skip


def yaml_dict(pairs: list[tuple[str, object]]) -> bytes:
    return ("---\n" + "".join(f"{k}: {v}\n" for k, v in pairs)).encode()


def yaml_list(names: list[str]) -> bytes:
    return ("---\n" + "".join(f"- {n}\n" for n in names)).encode()


def job_stats(job: Job, now: float, file_index: int) -> bytes:
    time_left = int(job.deadline - now) if job.state in (RESERVED, DELAYED) else 0
    return yaml_dict(
        [
            ("id", job.id),
            ("tube", job.tube),
            ("state", job.state),
            ("pri", job.pri),
            ("age", int(now - job.created)),
            ("delay", job.delay),
            ("ttr", job.ttr),
            ("time-left", max(time_left, 0)),
            ("file", file_index),
            ("reserves", job.reserves),
            ("timeouts", job.timeouts),
            ("releases", job.releases),
            ("buries", job.buries),
            ("kicks", job.kicks),
        ]
    )


def tube_stats(tube: Tube, now: float) -> bytes:
    paused = tube.paused(now)
    return yaml_dict(
        [
            ("name", tube.name),
            ("current-jobs-urgent", tube.urgent_count),
            ("current-jobs-ready", tube.ready_count),
            ("current-jobs-reserved", tube.reserved_count),
            ("current-jobs-delayed", tube.delayed_count),
            ("current-jobs-buried", len(tube.buried)),
            ("total-jobs", tube.total_jobs),
            ("current-using", tube.using),
            ("current-watching", tube.watching),
            ("current-waiting", len(tube.waiting)),
            ("cmd-delete", tube.cmd_delete),
            ("cmd-pause-tube", tube.cmd_pause),
            ("pause", tube.pause if paused else 0),
            ("pause-time-left", int(tube.unpause_at - now) if paused else 0),
        ]
    )


def _job_counts(queue: Queue) -> dict[str, int]:
    counts = {"urgent": 0, READY: 0, RESERVED: 0, DELAYED: 0, BURIED: 0}
    for tube in queue.tubes.values():
        counts["urgent"] += tube.urgent_count
        counts[READY] += tube.ready_count
        counts[RESERVED] += tube.reserved_count
        counts[DELAYED] += tube.delayed_count
        counts[BURIED] += len(tube.buried)
    return counts


def server_stats(
    queue: Queue,
    cmd_counts: dict[str, int],
    *,
    now: float,
    started: float,
    max_job_size: int,
    connections: int,
    total_connections: int,
    draining: bool,
    instance_id: str,
    binlog: dict[str, int],
) -> bytes:
    # Imported here, not at the top: only `stats` needs them, and start-up time matters.
    import platform
    import resource
    import socket

    counts = _job_counts(queue)
    clients = queue.clients.values()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    uname = os.uname()
    pairs: list[tuple[str, object]] = [
        ("current-jobs-urgent", counts["urgent"]),
        ("current-jobs-ready", counts[READY]),
        ("current-jobs-reserved", counts[RESERVED]),
        ("current-jobs-delayed", counts[DELAYED]),
        ("current-jobs-buried", counts[BURIED]),
    ]
    pairs += [(f"cmd-{name}", cmd_counts.get(name, 0)) for name in COUNTED_COMMANDS]
    pairs += [
        ("job-timeouts", queue.job_timeouts),
        ("total-jobs", queue.total_jobs),
        ("max-job-size", max_job_size),
        ("current-tubes", len(queue.tubes)),
        ("current-connections", connections),
        ("current-producers", sum(1 for c in clients if c.producer)),
        ("current-workers", sum(1 for c in clients if c.worker)),
        ("current-waiting", sum(1 for c in clients if c.waiting)),
        ("total-connections", total_connections),
        ("pid", os.getpid()),
        ("version", f'"{VERSION}"'),
        ("rusage-utime", f"{usage.ru_utime:.6f}"),
        ("rusage-stime", f"{usage.ru_stime:.6f}"),
        ("uptime", int(now - started)),
        ("binlog-oldest-index", binlog.get("oldest-index", 0)),
        ("binlog-current-index", binlog.get("current-index", 0)),
        ("binlog-records-migrated", binlog.get("records-migrated", 0)),
        ("binlog-records-written", binlog.get("records-written", 0)),
        ("binlog-max-size", binlog.get("max-size", 10_485_760)),
        ("draining", "true" if draining else "false"),
        ("id", instance_id),
        ("hostname", socket.gethostname()),
        ("os", uname.version),
        ("platform", platform.machine()),
    ]
    return yaml_dict(pairs)
