"""The kvcache server: the embedded cache behind the shared RESP engine.

On the request's journey this is the process at `:6380` the appserver's RESP client
talks to. It owns no protocol code: `minisys.resp` parses requests, checks arity and
auth, answers the connection commands (PING, HELLO, CLIENT, INFO, CONFIG …) and writes
replies; this module only assembles the pieces:

    LRUCache ─▶ Keyspace (ms, OOM, SCAN) ─▶ Engine(state=keyspace, table=all commands)
             ─▶ resp_server("kvcache", …)  +  a ticker running the active-expiry sweep

Why a periodic sweep: lazy expiry alone would keep a key that is never read again
forever. Like Redis's `hz 10`, every EXPIRE_PERIOD the sweep samples keys with a TTL for
at most EXPIRE_BUDGET of CPU (expiry.py), so memory comes back without a pause a client
would see. It runs on a `minisys.ticker.Ticker` rather than an `asyncio.sleep` loop: an
armed asyncio timer makes every loop turn dearer (~10k instructions), and a client that
waits for each reply pays one turn per request.

Simpler than the real thing: one database, no persistence, no replication, no pub/sub.
"""

from __future__ import annotations

import asyncio
import time

from kvcache import commands_keys, commands_object, commands_server, commands_strings
from kvcache.cache import LRUCache
from kvcache.commands_server import install_info_and_config
from kvcache.keyspace import Keyspace
from minisys.resp.engine import CommandTable, Engine
from minisys.resp.server import RespServer, resp_server
from minisys.server import ServerConfig
from minisys.ticker import Ticker

# Seconds between active-expiry sweeps (Redis's default hz 10).
EXPIRE_PERIOD = 0.1
# CPU seconds one sweep may take (Redis's fast cycle: 1 ms); the loop stays responsive.
EXPIRE_BUDGET = 0.001
# Redis's proto-max-bulk-len default: the largest value a client may send.
MAX_BULK = 512 * 1024 * 1024


def command_table() -> CommandTable:
    """A fresh table with every kvcache command (the engine adds the connection ones)."""
    table = CommandTable()
    for module in (commands_strings, commands_keys, commands_object, commands_server):
        for cmd in module.table:
            info = dict(first_key=cmd.first_key, last_key=cmd.last_key, key_step=cmd.key_step)
            table.add(cmd.name, cmd.handler, cmd.arity, cmd.flags, group="string", **info)
            for sub in cmd.subcommands.values():
                table.subcommand(cmd.name, sub.name, sub.arity, sub.flags)(sub.handler)
    return table


def kvcache_engine(cache: LRUCache, *, requirepass: str | None = None, clock=time.time) -> Engine:
    """An Engine serving `cache` (tests drive it directly, without sockets)."""
    keyspace = Keyspace(cache, clock)
    engine = Engine(
        command_table(),
        state=keyspace,
        requirepass=requirepass,
        component="kvcache",
        clock=clock,
    )
    install_info_and_config(engine, keyspace)
    return engine


def kvcache_server(
    config: ServerConfig,
    *,
    max_memory: int = 0,
    policy: str = "allkeys-lru",
    requirepass: str | None = None,
) -> RespServer:
    """The server with its own cache, bounded by bytes only (Redis has no key-count bound)."""
    cache = LRUCache(0, max_memory, policy=policy)
    return resp_server(
        "kvcache", config, kvcache_engine(cache, requirepass=requirepass), max_bulk=MAX_BULK
    )


def start_active_expiry(loop: asyncio.AbstractEventLoop, cache: LRUCache) -> Ticker:
    """Sweep expired keys every EXPIRE_PERIOD on `loop`'s thread until the ticker stops."""
    return Ticker(loop, EXPIRE_PERIOD, lambda: cache.active_expire(EXPIRE_BUDGET)).start()
