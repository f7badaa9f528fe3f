"""What every server can be told on its command line, without importing asyncio.

On the request's journey this is the first thing any server process does: read its flags.
It lives apart from `minisys/server.py` so that a server which must listen quickly (mq,
standing in for beanstalkd in a client library's test harness that connects a few
milliseconds after starting it) can parse its flags and bind its socket before it pays
for importing asyncio (about a fifth of its start-up here).

Read next: `minisys/server.py`, which re-exports all of this.

Simpler than the real thing: nginx and HAProxy read a configuration file with reload
semantics; our servers take flags, and the launcher restarts a process to change them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

# The kernel queues this many not-yet-accepted connections. A burst of clients (a load
# test opening 50 connections at once, or clients arriving while we start) waits here.
LISTEN_BACKLOG = 1024


@dataclass
class ServerConfig:
    """What every server can be told on its command line."""

    host: str = "127.0.0.1"
    port: int = 0
    # Each connection costs a file descriptor and some buffers; past this we refuse.
    max_connections: int = 10_000
    # A connection that sends nothing for this long (and is not mid-request) is closed, so
    # forgotten clients cannot pin file descriptors forever. 0 turns it off.
    idle_timeout: float = 300.0
    # On shutdown, in-flight requests get this long to finish before we cut them off.
    drain_timeout: float = 10.0
    log_format: str = "human"
    log_level: str = "info"


def add_server_arguments(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    """Add the flags every server shares (--host, --port, limits, timeouts, logging)."""
    d = ServerConfig()
    group = parser.add_argument_group("server")
    group.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    group.add_argument(
        "--port",
        type=int,
        default=default_port,
        help="port to bind; 0 lets the OS pick (default %(default)s)",
    )
    group.add_argument("--max-connections", type=int, default=d.max_connections)
    group.add_argument(
        "--idle-timeout", type=float, default=d.idle_timeout, help="seconds; 0 = never"
    )
    group.add_argument("--drain-timeout", type=float, default=d.drain_timeout)
    group.add_argument("--log-format", choices=("human", "json"), default=d.log_format)
    group.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=d.log_level
    )


def server_config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Build a ServerConfig from the flags added by add_server_arguments."""
    if not 0 <= args.port <= 65535:
        raise SystemExit(f"--port must be between 0 and 65535, not {args.port}")
    if args.max_connections < 1:
        raise SystemExit("--max-connections must be at least 1")
    return ServerConfig(
        host=args.host,
        port=args.port,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        drain_timeout=args.drain_timeout,
        log_format=args.log_format,
        log_level=args.log_level,
    )


def admin_config(config: ServerConfig, port: int) -> ServerConfig:
    """An admin port's settings: the main server's host and logging, the default limits."""
    return ServerConfig(
        host=config.host, port=port, log_format=config.log_format, log_level=config.log_level
    )
