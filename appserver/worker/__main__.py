"""`python -m appserver.worker`: send the shop's e-mails from mq into an mbox outbox.

    python -m appserver.worker --queue beanstalk://127.0.0.1:11301 \\
        --outbox ./minisys-data/outbox.mbox [--concurrency 4] [--max-attempts 5]

Prints `READY worker emails@127.0.0.1:11301` — the tube it consumes and the mq it is on;
it listens on no port of its own — once its first connection to mq watches `emails`;
keeps reconnecting with back-off while mq is down. SIGTERM or Ctrl-C: idle lanes stop at
once, busy ones finish their current job, then it exits 0.

`--stall SECONDS` is a teaching seam: each job waits that long before its e-mail is
written, so you can kill (or `kill -STOP`) the worker mid-job and watch mq hand the job to
another worker — and the mbox refuse the late duplicate.

Read next: `runner.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from appserver.stores import parse_store_url
from appserver.worker.mbox import MboxOutbox
from appserver.worker.runner import EMAIL_TUBE, Worker, WorkerSettings
from appserver.worker.source import connector
from minisys.logs import get_logger, setup_logging
from minisys.server import wait_for_stop_signal

# Lanes (jobs in flight at once); each holds one mq connection.
MAX_CONCURRENCY = 64

log = get_logger("appserver.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = WorkerSettings()
    parser = argparse.ArgumentParser(
        prog="python -m appserver.worker", description="Send the shop's e-mails."
    )
    parser.add_argument("--queue", default="beanstalk://127.0.0.1:11301", help="mq URL")
    parser.add_argument("--outbox", default="./minisys-data/outbox.mbox", help="mbox file")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=d.concurrency,
        help=f"jobs in flight at once (1-{MAX_CONCURRENCY})",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=d.max_attempts,
        help="deliveries of a failing job before it is buried",
    )
    parser.add_argument(
        "--backoff",
        type=float,
        default=d.backoff_base,
        help="seconds before the 2nd attempt; doubles each time",
    )
    parser.add_argument(
        "--stall", type=float, default=0.0, help="teaching seam: wait this long before each send"
    )
    parser.add_argument(
        "--db", help="ignored: jobs carry all the worker needs (the launcher passes it)"
    )
    parser.add_argument("--log-format", choices=("human", "json"), default="human")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency must be 1 to {MAX_CONCURRENCY}")
    if args.max_attempts < 1:
        parser.error("--max-attempts must be at least 1")
    try:
        url = parse_store_url(args.queue)
    except ValueError as exc:
        parser.error(str(exc))
    if url.scheme != "beanstalk":
        parser.error("--queue must be a beanstalk:// URL")
    args.queue_at = url
    return args


async def main_async(args: argparse.Namespace) -> None:
    settings = WorkerSettings(
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        backoff_base=args.backoff,
        stall=args.stall,
    )
    worker = Worker(
        connector(args.queue_at.host, args.queue_at.port), MboxOutbox(args.outbox), settings
    )
    stop = wait_for_stop_signal()

    def ready() -> None:
        print(f"READY worker {EMAIL_TUBE}@{args.queue_at.host}:{args.queue_at.port}", flush=True)
        log.info(
            "watching tube emails on %s:%d, writing %s",
            args.queue_at.host,
            args.queue_at.port,
            args.outbox,
        )

    await worker.run(stop, on_ready=ready)
    s = worker.stats
    log.info(
        "stopped: %d sent, %d duplicates skipped, %d released, %d buried",
        s.sent,
        s.duplicates,
        s.released,
        s.buried,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("worker", fmt=args.log_format, level=args.log_level)
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
