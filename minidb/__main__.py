"""`python -m minidb --port 6381 --data-dir ./minisys-data/minidb --fsync always`.

Opens (and recovers) the database, prints `READY minidb 127.0.0.1:<port>`, serves RESP
until SIGTERM or Ctrl-C, then drains its connections, fsyncs and exits 0. Try it with the
real tools:

    redis-cli -p 6381 set greeting hello
    redis-benchmark -p 6381 -t set,get,incr,mset -c 50 -q
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from minisys.poller import ServingLoopPolicy
from minisys.server import add_server_arguments, run, serve, server_config_from_args

from .engine import DEFAULT_MAX_FILE_SIZE, DEFAULT_MERGE_DEAD_RATIO, DEFAULT_MERGE_MIN_DEAD_BYTES
from .server import minidb_server
from .sync import FSYNC_POLICIES

# Where minidb listens unless told otherwise (Redis's 6379 stays free for the real one).
DEFAULT_PORT = 6381
DEFAULT_DATA_DIR = "./minisys-data/minidb"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minidb", description=__doc__.split("\n")[0])
    add_server_arguments(parser, default_port=DEFAULT_PORT)
    parser.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="directory of the data files (created)"
    )
    parser.add_argument(
        "--fsync",
        choices=FSYNC_POLICIES,
        default="always",
        help="always: ack after fsync (group commit); everysec: lose <= ~1 s; no: OS decides",
    )
    parser.add_argument("--max-file-size", type=int, default=DEFAULT_MAX_FILE_SIZE)
    parser.add_argument("--merge-dead-ratio", type=float, default=DEFAULT_MERGE_DEAD_RATIO)
    parser.add_argument("--merge-min-dead-bytes", type=int, default=DEFAULT_MERGE_MIN_DEAD_BYTES)
    parser.add_argument("--requirepass", default=None, help="password clients must AUTH with")
    args = parser.parse_args(argv)
    config = server_config_from_args(args)

    async def amain() -> None:
        server = minidb_server(
            config,
            args.data_dir,
            requirepass=args.requirepass,
            fsync=args.fsync,
            max_file_size=args.max_file_size,
            merge_dead_ratio=args.merge_dead_ratio,
            merge_min_dead_bytes=args.merge_min_dead_bytes,
        )
        engine = server.engine

        async def on_stop() -> None:
            engine.durability.close()
            engine.db.close()

        await serve(server, on_stop=on_stop)

    # Our loop's selector calls each client socket's read straight from epoll and returns
    # to asyncio only when it has work (minisys/poller.py; minisys/resp/server.py).
    asyncio.set_event_loop_policy(ServingLoopPolicy())
    return run(amain, component="minidb", config=config)


if __name__ == "__main__":
    sys.exit(main())
