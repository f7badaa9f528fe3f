"""A tiny RESP server built from the engine: GET, SET, DEL, DBSIZE on a plain dict.

On the request's journey this stands where kvcache and minidb stand, minus everything
that makes them interesting: it exists so the RESP kernel can be tried and measured on its
own (`python -m minisys.resp --port 6390`, then `redis-cli -p 6390 ping` or
`redis-benchmark -p 6390 -t ping,set,get`), and so the kernel's interop tests have a
server that depends on no layer. It also shows the whole recipe a layer follows:

    table = CommandTable()              # 1. a table
    @table.command("get", arity=2)      # 2. handlers that return reply values
    engine = Engine(table, state=...)   # 3. an engine (adds PING, HELLO, CLIENT, …)
    resp_server(name, config, engine)   # 4. a server, run by minisys.server.serve

Simpler than the real thing: no options on SET, no expiry, no types.
"""

from __future__ import annotations

import argparse
import asyncio

from minisys.poller import ServingLoopPolicy
from minisys.resp.engine import CommandTable, Engine, Session
from minisys.resp.server import RespServer, resp_server
from minisys.resp.values import SimpleString
from minisys.server import ServerConfig, add_server_arguments, run, serve, server_config_from_args

# The demo's port when none is given: next to kvcache (6380) and minidb (6381).
DEFAULT_PORT = 6390

table = CommandTable()


@table.command("get", arity=2, flags=("readonly", "fast"), first_key=1, last_key=1, key_step=1)
def get(session: Session, argv: list[bytes]) -> object:
    """Get the value of a key."""
    return session.server_state.get(argv[1])


@table.command("set", arity=3, flags=("write",), first_key=1, last_key=1, key_step=1)
def set_(session: Session, argv: list[bytes]) -> object:
    """Set the string value of a key."""
    session.server_state[argv[1]] = argv[2]
    return SimpleString("OK")


@table.command("del", arity=-2, flags=("write",), first_key=1, last_key=-1, key_step=1)
def del_(session: Session, argv: list[bytes]) -> object:
    """Delete keys."""
    store = session.server_state
    return sum(store.pop(key, None) is not None for key in argv[1:])


@table.command("dbsize", arity=1, flags=("readonly", "fast"))
def dbsize(session: Session, argv: list[bytes]) -> object:
    """Return the number of keys in the selected database."""
    return len(session.server_state)


def demo_server(config: ServerConfig, *, requirepass: str | None = None) -> RespServer:
    """The demo server, with its own empty dict."""
    engine = Engine(table, state={}, requirepass=requirepass, component="resp-demo")
    return resp_server("resp-demo", config, engine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minisys.resp", description=__doc__)
    add_server_arguments(parser, default_port=DEFAULT_PORT)
    parser.add_argument("--requirepass", default=None, help="password for AUTH")
    args = parser.parse_args(argv)
    config = server_config_from_args(args)

    async def amain() -> None:
        await serve(demo_server(config, requirepass=args.requirepass))

    # Our loop's selector calls each client socket's read straight from epoll and returns
    # to asyncio only when it has work (minisys/poller.py; minisys/resp/server.py).
    asyncio.set_event_loop_policy(ServingLoopPolicy())
    return run(amain, component="resp-demo", config=config)
