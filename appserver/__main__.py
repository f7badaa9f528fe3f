"""`python -m appserver`: run the shop's HTTP server (and its outbox drainer).

    python -m appserver --port 8091 \\
        --cache redis://127.0.0.1:6380 --db redis://127.0.0.1:6381 \\
        --queue beanstalk://127.0.0.1:11301

Prints `READY appserver 127.0.0.1:<port>` once it listens. Nothing connects to the stores
until the first request needs them, so the appserver starts even while a store is still
coming up (`GET /readyz` says what is reachable). `--seed` writes the demo data first
(idempotent; see `seed.py`). `memory://` stores run the shop with no servers at all.

On SIGTERM it stops accepting, lets in-flight requests finish, stops the drainer, closes
its store connections and exits 0.

Read next: `app.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from appserver.app import build_app
from appserver.outbox import DEFAULT_JOB_TTR, DRAIN_INTERVAL, DRAIN_MIN_AGE
from appserver.seed import seed
from appserver.shop import build_shop
from appserver.stores import StoreUnavailable, check_store_urls, open_stores
from appserver.validation import MAX_BODY_BYTES
from minisys.http.head import Limits
from minisys.http.server import http_server
from minisys.logs import get_logger
from minisys.server import (
    add_server_arguments,
    run,
    serve,
    server_config_from_args,
    wait_for_stop_signal,
)

DEFAULT_PORT = 8091
# How long one store command may take before the request fails with 503.
DEFAULT_STORE_TIMEOUT = 2.0

log = get_logger("appserver")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m appserver", description="The minisys shop (HTTP/JSON)."
    )
    add_server_arguments(parser, default_port=DEFAULT_PORT)
    shop = parser.add_argument_group("shop")
    shop.add_argument("--cache", default="redis://127.0.0.1:6380", help="cache URL")
    shop.add_argument("--db", default="redis://127.0.0.1:6381", help="database URL")
    shop.add_argument("--queue", default="beanstalk://127.0.0.1:11301", help="queue URL")
    shop.add_argument(
        "--store-timeout",
        type=float,
        default=DEFAULT_STORE_TIMEOUT,
        help="seconds per store command before answering 503",
    )
    shop.add_argument(
        "--job-ttr", type=int, default=DEFAULT_JOB_TTR, help="time-to-run of e-mail jobs, seconds"
    )
    shop.add_argument(
        "--outbox-interval",
        type=float,
        default=DRAIN_INTERVAL,
        help="seconds between outbox drains",
    )
    shop.add_argument(
        "--outbox-min-age",
        type=float,
        default=DRAIN_MIN_AGE,
        help="outbox entries younger than this are left to their request",
    )
    shop.add_argument("--seed", action="store_true", help="write the demo data at start")
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace) -> None:
    stores = open_stores(args.cache, args.db, args.queue, timeout=args.store_timeout)
    shop = build_shop(stores, job_ttr=args.job_ttr)
    if args.seed:
        try:
            log.info("seed: wrote %d keys", await seed(stores.db))
        except StoreUnavailable as exc:
            log.warning("seed skipped: %s", exc)
    config = server_config_from_args(args)
    server = http_server(
        "appserver", config, build_app(shop), limits=Limits(max_body=MAX_BODY_BYTES)
    )
    stop = wait_for_stop_signal()
    drainer_stop = asyncio.Event()
    drainer = asyncio.create_task(
        shop.outbox.run(drainer_stop, args.outbox_interval, args.outbox_min_age)
    )

    async def on_stop() -> None:
        drainer_stop.set()
        await drainer
        await shop.outbox.flush()  # forget the outbox entries of jobs already on mq
        await stores.close()

    await serve(server, stop=stop, on_stop=on_stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_store_urls(args.cache, args.db, args.queue)
    except ValueError as exc:
        print(f"appserver: {exc}", file=sys.stderr)
        return 2
    config = server_config_from_args(args)
    return run(lambda: main_async(args), component="appserver", config=config)


if __name__ == "__main__":
    sys.exit(main())
