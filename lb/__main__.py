"""`python -m lb`: run the L4 load balancer from the command line.

    python -m lb --port 8080 --backend 127.0.0.1:8081 --backend 127.0.0.1:8082,weight=2 \\
        --algorithm leastconn --health http:/healthz --admin-port 8070 [--send-proxy]

Prints `READY lb 127.0.0.1:8080` (and `READY lb-admin …`) once listening, drains on
SIGTERM/SIGINT. With `--workers N` this process becomes the master of N worker
processes that share the port (lb/workers.py). See lb/README.md for every flag.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from lb.algorithms import ALGORITHMS, make_algorithm
from lb.backend import Pool, parse_backend
from lb.checks import HealthChecker, parse_health_spec
from lb.health import HealthSettings
from lb.listener import Listener
from lb.proxy import DEFAULT_QUEUE_SIZE, Balancer, ProxySettings
from lb.workers import MAX_WORKERS, WORKER_ENV, run_master
from minisys.poller import ServingLoopPolicy
from minisys.server import (
    add_server_arguments,
    run,
    serve,
    server_config_from_args,
)
from minisys.serverconfig import admin_config

DEFAULT_PORT = 8080
DEFAULT_ADMIN_PORT = 8070


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lb", description="minisys L4 TCP load balancer")
    add_server_arguments(p, default_port=DEFAULT_PORT)
    g = p.add_argument_group("balancing")
    g.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="HOST:PORT[,weight=N][,maxconn=N]",
        help="a backend server; repeat the flag for several",
    )
    g.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="leastconn")
    g.add_argument("--connect-timeout", type=float, default=2.0, help="seconds")
    g.add_argument("--retries", type=int, default=2, help="connect retries on other backends")
    g.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE)
    g.add_argument("--queue-timeout", type=float, default=5.0, help="seconds")
    g.add_argument("--send-proxy", action="store_true", help="send a PROXY v1 line first")
    h = p.add_argument_group("health")
    h.add_argument("--health", default="tcp", help="tcp, none or http:/path (default tcp)")
    h.add_argument("--check-interval", type=float, default=2.0)
    h.add_argument("--check-timeout", type=float, default=1.0)
    h.add_argument("--down-interval", type=float, help="check interval while DOWN")
    h.add_argument("--rise", type=int, default=2)
    h.add_argument("--fall", type=int, default=3)
    h.add_argument("--eject-after", type=int, default=3, help="connect failures; 0 = never")
    h.add_argument("--eject-cooldown", type=float, default=10.0)
    h.add_argument("--slow-start", type=float, default=0.0, help="seconds; 0 = off")
    g.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port, each with its own pool and checks (lb/workers.py)",
    )
    a = p.add_argument_group("admin")
    a.add_argument(
        "--admin-port", type=int, default=DEFAULT_ADMIN_PORT, help="stats/admin HTTP; -1 = off"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    config = server_config_from_args(args)
    if not 1 <= args.workers <= MAX_WORKERS:
        print(f"lb: --workers must be 1..{MAX_WORKERS}", file=sys.stderr)
        return 2
    try:
        kind, path = parse_health_spec(args.health)
        settings = HealthSettings(
            interval=args.check_interval,
            timeout=args.check_timeout,
            down_interval=args.down_interval,
            rise=args.rise,
            fall=args.fall,
            eject_after=args.eject_after,
            eject_cooldown=args.eject_cooldown,
            slow_start=args.slow_start,
        )
        backends = [parse_backend(spec, settings) for spec in args.backend]
        pool = Pool(make_algorithm(args.algorithm), backends)
    except ValueError as exc:
        print(f"lb: {exc}", file=sys.stderr)
        return 2
    if not backends:
        print("lb: warning: no --backend given; add some through the admin API", file=sys.stderr)
    balancer = Balancer(
        pool,
        ProxySettings(
            connect_timeout=args.connect_timeout,
            retries=max(0, args.retries),
            send_proxy=args.send_proxy,
            queue_size=args.queue_size,
            queue_timeout=args.queue_timeout,
        ),
    )
    if args.workers > 1:
        # The flags were checked above; each worker parses them again and does the work.
        code = [0]

        async def master() -> None:
            code[0] = await run_master(args, argv, config)

        return run(master, component="lb", config=config) or code[0]
    checker = HealthChecker(pool, kind, path, send_proxy=args.send_proxy)

    async def amain() -> None:
        servers = [Listener("lb", config, balancer.connection)]
        if args.admin_port >= 0:
            from lb.admin import admin_server

            admin = admin_config(config, args.admin_port)
            servers.append(admin_server(admin, balancer, checker, settings, servers[0]))
        checker.start()
        await serve(*servers, on_stop=checker.stop)

    # Spliced sockets are served by the loop's own selector, which waits again itself
    # while asyncio has nothing to do (minisys/poller.py's ServingSelector says why).
    asyncio.set_event_loop_policy(ServingLoopPolicy())
    # A worker of `--workers N` says which one it is in every log line (lb/workers.py).
    worker = os.environ.get(WORKER_ENV)
    return run(amain, component=f"lb-worker-{worker}" if worker else "lb", config=config)


if __name__ == "__main__":
    sys.exit(main())
