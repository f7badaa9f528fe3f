"""`python -m kvcache --port 6380 --max-memory 64mb --policy allkeys-lru [--requirepass pw]`.

Starts the cache server, prints `READY kvcache 127.0.0.1:<port>`, serves until SIGTERM or
Ctrl-C, then drains its connections and exits 0. Try it with the real tools:

    redis-cli -p 6380 set greeting hello ex 60
    redis-benchmark -p 6380 -t set,get -q
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from kvcache.commands_server import parse_memory
from kvcache.eviction import POLICIES
from kvcache.server import kvcache_server, start_active_expiry
from minisys.poller import ServingLoopPolicy
from minisys.server import add_server_arguments, run, serve, server_config_from_args

# Where kvcache listens unless told otherwise (Redis's 6379 stays free for the real one).
DEFAULT_PORT = 6380


def _memory(text: str) -> int:
    try:
        return parse_memory(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (try 64mb)") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kvcache", description=__doc__.split("\n")[0])
    add_server_arguments(parser, default_port=DEFAULT_PORT)
    parser.add_argument(
        "--max-memory", type=_memory, default=0, help="byte bound, e.g. 64mb (0 = none)"
    )
    parser.add_argument("--policy", choices=POLICIES, default="allkeys-lru")
    parser.add_argument("--requirepass", default=None, help="password clients must AUTH with")
    args = parser.parse_args(argv)
    config = server_config_from_args(args)

    async def amain() -> None:
        server = kvcache_server(
            config, max_memory=args.max_memory, policy=args.policy, requirepass=args.requirepass
        )
        loop = asyncio.get_running_loop()
        sweeper = start_active_expiry(loop, server.engine.state.cache)
        try:
            await serve(server)
        finally:
            sweeper.stop()

    # Our loop's selector calls each client socket's read straight from epoll and returns
    # to asyncio only when it has work (minisys/poller.py; minisys/resp/server.py).
    asyncio.set_event_loop_policy(ServingLoopPolicy())
    return run(amain, component="kvcache", config=config)


if __name__ == "__main__":
    sys.exit(main())
