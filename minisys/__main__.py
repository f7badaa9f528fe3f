"""`python -m minisys`: the front door a learner meets first.

    python -m minisys [up]      start the whole stack (the default), Ctrl-C stops it
    python -m minisys status    one line per component: up/down, pid, port, key numbers
    python -m minisys demo      walk the seed's story against the running stack
    python -m minisys bench     place orders through the lb under load; throughput, latency

Read next: `launcher.py` (how `up` runs and supervises the processes) and `topology.py`
(what runs where).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from minisys.config import ConfigError, load_toml
from minisys.launcher import Launcher, LaunchError, bind_all, child_environment
from minisys.server import announce_ready
from minisys.topology import DEFAULT_PORTS, Topology, build, from_toml

DEFAULT_DATA_DIR = "./minisys-data"
DEMO_KEY = "minisys-demo-key"
# Seeding the demo data is a few dozen small writes; past this something is wrong.
SEED_TIMEOUT = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m minisys",
        description="Run every layer of the backend stack on loopback.",
    )
    parser.add_argument(
        "command", nargs="?", default="up", choices=("up", "status", "demo", "bench")
    )
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="default %(default)s")
    parser.add_argument("--config", help="TOML file with [ports] and [flags] tables")
    parser.add_argument(
        "--any-ports",
        action="store_true",
        help="let the OS choose every port (for tests and side-by-side runs)",
    )
    parser.add_argument("--log-format", choices=("human", "json"), default="human")
    parser.add_argument("--connections", type=int, default=20, help="bench: connections")
    parser.add_argument("--duration", type=float, default=10.0, help="bench: seconds")
    return parser.parse_args(argv)


def banner(topo: Topology) -> str:
    lb = topo.port_of("lb")
    lines = ["", "minisys is up:"]
    for comp in topo.components:
        where = ", ".join(f"{name} {topo.host}:{port}" for name, port in comp.listeners.items())
        lines.append(f"  {comp.name:<12} {where or '(no port)'}")
    lines += [
        f"  data dir     {topo.data_dir}",
        "",
        "Try:",
        f"  curl -s -X POST http://{topo.host}:{lb}/place-order \\",
        f"       -H 'Authorization: Bearer {DEMO_KEY}' -H 'Content-Type: application/json' \\",
        """       -d '{"user_id": 1, "items": [{"sku": "sku-1", "qty": 1}]}'""",
        f"  curl -si http://{topo.host}:{lb}/users/2 -H 'X-API-Key: {DEMO_KEY}' | grep -i x-cache"
        "   # twice: miss, then hit",
        f"  python -m minisys demo --data-dir {topo.data_dir}",
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def seed(topo: Topology) -> str | None:
    """Load the demo data (idempotent). Returns an error message, or None."""
    db = topo.port_of("minidb")
    kv = topo.port_of("kvcache")
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "appserver.seed",
                "--db",
                f"redis://{topo.host}:{db}",
                "--cache",
                f"redis://{topo.host}:{kv}",
            ],
            capture_output=True,
            text=True,
            timeout=SEED_TIMEOUT,
            env=child_environment(),
        )
    except subprocess.TimeoutExpired:
        return f"seeding the demo data took longer than {SEED_TIMEOUT:.0f}s"
    if done.returncode != 0:
        return f"seeding the demo data failed:\n{done.stdout}{done.stderr}"
    return None


async def up(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    ports, flags = dict(DEFAULT_PORTS), {}
    if args.config:
        try:
            ports_override, flags = from_toml(load_toml(args.config))
        except ConfigError as exc:
            print(f"minisys: {args.config}: {exc}", file=sys.stderr)
            return 2
        ports.update(ports_override)
    if args.any_ports:
        ports = {name: [0] * len(values) for name, values in ports.items()}
    try:
        sockets = bind_all("127.0.0.1", ports)
    except LaunchError as exc:
        print(f"minisys: {exc}", file=sys.stderr)
        return 1
    actual = {name: [s.getsockname()[1] for s in socks] for name, socks in sockets.items()}
    topo = build(data_dir, actual, flags, args.log_format)
    launcher = Launcher(topo, sockets, color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    starting = asyncio.create_task(launcher.start())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        await launcher.stop()
        return 0
    try:
        starting.result()
    except LaunchError as exc:
        print(f"minisys: {exc}", file=sys.stderr)
        await launcher.stop()
        return 1
    error = await asyncio.to_thread(seed, topo)
    if error:
        launcher.say("minisys", error)
    print(banner(topo), flush=True)
    announce_ready("minisys", f"{topo.host}:{topo.port_of('lb')}")
    await stopped
    launcher.say("minisys", "stopping: lb, gateways, appservers and worker, then the stores")
    await launcher.stop()
    launcher.say("minisys", "stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "up":
        return asyncio.run(up(args))
    if args.command == "status":
        from minisys.status import status

        return asyncio.run(status(Path(args.data_dir)))
    if args.command == "demo":
        from minisys.demo import demo

        return asyncio.run(demo(Path(args.data_dir)))
    from minisys.loadtest import bench

    return asyncio.run(bench(Path(args.data_dir), args.connections, args.duration))


if __name__ == "__main__":
    sys.exit(main())
