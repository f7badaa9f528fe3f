"""`python -m gateway`: start the API gateway and its admin port.

    python -m gateway --port 8081 --admin-port 8071 --config gateway.toml

Without `--config` the built-in demo configuration (gateway/config.py `DEMO_TOML`) serves
the shop on the appservers at 127.0.0.1:8091 and :8092 with two consumers: `demo`
(key `minisys-demo-key`, 5 requests per 10 s, so the 6th shows a 429) and `bench`
(key `minisys-bench-key`, a million per second). `--upstream host:port` (repeatable)
replaces the demo's appservers, and `--cache redis://…` points shared limits at kvcache
(the launcher passes both); with `--cache` and no `--config` the demo consumer's limit is
`shared`, so both gateways behind the lb enforce one limit.

`--workers N` runs N such processes on one port (gateway/workers.py), like nginx's
`worker_processes`; `local` limits are then per worker, `shared` ones stay exact.

On SIGHUP the config file is read again; if it is invalid the error is logged (naming the
bad key) and the old configuration keeps serving. SIGTERM/SIGINT drain and stop.

On the request's journey this file only wires things together: servers from minisys, the
pipeline from pipeline.py, the admin API from admin.py.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tomllib

from minisys.config import ConfigError
from minisys.http.head import Limits
from minisys.http.server import HttpSettings, http_server
from minisys.logs import get_logger, setup_logging
from minisys.server import ServerConfig, add_server_arguments, run, serve, server_config_from_args

from . import config as gwconfig
from .admin import Admin
from .pipeline import Gateway
from .proxy import GatewayConnection
from .ratelimit import RateLimiter
from .upstream import HttpTransport
from .workers import supervise

log = get_logger("gateway")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.split("\n")[0])
    add_server_arguments(parser, default_port=8081)
    parser.add_argument("--admin-port", type=int, default=8071, help="admin API port (0 = any)")
    parser.add_argument("--config", help="TOML file (default: the built-in demo)")
    parser.add_argument(
        "--upstream", action="append", default=[], metavar="HOST:PORT",
        help="with the demo config: appserver members instead of :8091 and :8092",
    )  # fmt: skip
    parser.add_argument("--cache", default="", help="kvcache URL for shared limits (redis://…)")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="processes sharing the port (SO_REUSEPORT); local limits become per worker",
    )  # fmt: skip
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> gwconfig.GatewayConfig:
    if args.config:
        cfg = gwconfig.load(args.config)
        if args.cache and not cfg.store:
            cfg.store = args.cache
        return cfg
    data = tomllib.loads(gwconfig.DEMO_TOML)
    if args.upstream:
        data["upstreams"]["shop"]["members"] = list(args.upstream)
    if args.cache:
        data["ratelimit"] = {"store": args.cache}
        data["consumers"]["demo"]["limit"]["policy"] = "shared"
    return gwconfig.build(data, source="<built-in demo>")


async def main(args: argparse.Namespace, server_config: ServerConfig) -> None:
    cfg = load_config(args)
    store = None
    if cfg.store:
        from .store import RespStore  # only needed (and only imported) for shared limits

        store = RespStore(cfg.store, cfg.store_timeout)
    limiter = RateLimiter(store, fail_open=cfg.fail_open, store_timeout=cfg.store_timeout)
    gateway = Gateway(cfg, transport_factory=HttpTransport, limiter=limiter)
    admin = Admin(gateway)

    settings = HttpSettings(
        limits=Limits(max_body=cfg.max_body, max_header_bytes=cfg.max_header),
        server_header="",
    )
    # Our connections read an optional PROXY v1 line from trusted peers before HTTP; the
    # trusted list is read per connection, so a reload applies to new connections.
    server = http_server(
        "gateway", server_config, gateway.handle, settings=settings,
        connection_factory=lambda handle, settings: GatewayConnection(
            handle, settings, gateway.config.trusted_proxies, gateway.handle_now,
            gateway.hot.take_request,
        ),
    )  # fmt: skip
    admin_config = ServerConfig(**{**server_config.__dict__, "port": args.admin_port})
    admin_server = http_server("gateway-admin", admin_config, admin.handle)

    def reload() -> None:
        if not args.config:
            log.info("SIGHUP: no --config file, nothing to reload")
            return
        try:
            new = gwconfig.load(args.config)
        except ConfigError as exc:
            log.error("reload failed, keeping the old configuration: %s", exc)
            admin.reloaded(str(exc))
            return
        if args.cache and not new.store:
            new.store = args.cache
        if new.store != cfg.store:
            log.warning("ratelimit.store changed: the new store is used after a restart")
        gateway.apply(new)
        admin.reloaded()
        log.info(
            "reloaded %s: %d routes, %d upstreams", args.config, len(new.routes), len(new.upstreams)
        )

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    background = asyncio.create_task(gateway.background())
    log.info(
        "gateway serving %s: %d routes, %d consumers",
        cfg.source, len(cfg.routes), len(cfg.consumers),
    )  # fmt: skip

    async def on_stop() -> None:
        background.cancel()
        await gateway.close()
        if store is not None:
            await store.close()

    await serve(server, admin_server, on_stop=on_stop)


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server_config = server_config_from_args(args)
    try:
        load_config(args)
    except ConfigError as exc:
        print(f"gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("gateway: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        setup_logging("gateway", fmt=server_config.log_format, level=server_config.log_level)
        return supervise(
            sys.argv[1:] if argv is None else argv,
            server_config.host, server_config.port, args.admin_port, args.workers,
        )  # fmt: skip
    return run(lambda: main(args, server_config), component="gateway", config=server_config)


if __name__ == "__main__":
    sys.exit(cli())
