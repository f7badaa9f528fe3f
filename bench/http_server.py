"""Benchmark our HTTP/1.1 server against uvicorn (h11) and aiohttp on a hello-world JSON.

    python bench/http_server.py [--duration 5] [--rounds 3] [--connections 50] [--app]

Each server is one process on one event loop answering `GET /` with
`{"message": "Hello, World!"}`:

    ours      minisys.http.server.http_server with a plain async handler
              (`--app`: through the web framework's App: router, request id, metrics)
    uvicorn   `--http h11 --loop asyncio`, a raw ASGI app (the pure-Python peer)
    aiohttp   web.Application with one route (its C parser, llhttp)

`wrk -t1 -c50` drives each (our own load generator if wrk is missing), alternating the
servers within every round so machine noise hits all alike; medians over the rounds.
A peer that is not installed is skipped with a message. With `--streams` it also runs
the same server logic on asyncio streams instead of a Protocol, to show why we chose
the Protocol.

Ends with (for p99 the ratio is peer/ours, so for every line higher is better):

    RESULT http_vs_uvicorn_h11: ours=… peer=… ratio=… target=4.0
    RESULT http_vs_aiohttp: ours=… peer=… ratio=… target=1.5
    RESULT http_p99_vs_aiohttp_ms: ours=… peer=… ratio=… target=1.0
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minisys.testing import ServerProcess  # noqa: E402

BODY = json.dumps({"message": "Hello, World!"}).encode()
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


# --- the servers (each runs in its own process: `python bench/http_server.py --serve X`) ---


def serve_ours(port: int, use_app: bool) -> None:
    from minisys.http import App, Response, http_server, json_response
    from minisys.server import ServerConfig, serve

    if use_app:
        app = App("bench", access_log=False)

        @app.get("/")
        async def hello_app(request):
            return json_response({"message": "Hello, World!"})

        handler = app
    else:

        async def handler(request):
            return Response(200, [("Content-Type", "application/json")], BODY)

    asyncio.run(serve(http_server("ours", ServerConfig(port=port), handler)))


def serve_streams(port: int) -> None:
    """Our codec and handler shape on asyncio streams (for the Protocol-vs-streams note).

    One task per connection reads, parses, awaits the handler inline (no task per request)
    and writes; responses are serialized with the same helpers as the Protocol server.
    """
    from minisys.http.codec import RequestParser
    from minisys.http.head import HttpError
    from minisys.http.message import Request, Response
    from minisys.http.respond import http_date
    from minisys.http.serialize import serialize_response

    async def handler(request):
        return Response(200, [("Content-Type", "application/json")], BODY)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = RequestParser()
        peer = writer.get_extra_info("peername")
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (message := parser.next_message()) is not None:
                    head, body = message
                    request = Request(head.method, head.target, head.headers, body, peer=peer)
                    response = await handler(request)
                    headers = [*response.headers, ("Date", http_date(time.time()))]
                    writer.write(serialize_response(response.status, headers, response.body))
                await writer.drain()
        except (HttpError, ConnectionError):
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(on_client, "127.0.0.1", port)
        print(f"READY streams 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()

    asyncio.run(main())


def serve_aiohttp(port: int) -> None:
    from aiohttp import web

    async def hello(request):
        return web.json_response({"message": "Hello, World!"})

    app = web.Application()
    app.router.add_get("/", hello)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        print(f"READY aiohttp 127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_uvicorn(port: int) -> None:
    import socket

    import uvicorn

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": BODY})

    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP, and a plain socket.socket() says 0 (that alone costs 40 ms/request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", port))
    print(f"READY uvicorn 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        app, http="h11", loop="asyncio", log_level="warning", access_log=False, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])


# --- driving them ------------------------------------------------------------------------


def parse_wrk(output: str) -> tuple[float, float]:
    """(requests per second, p99 in ms) from `wrk --latency` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    return rps, float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def drive(port: int, duration: float, connections: int) -> tuple[float, float]:
    url = f"http://127.0.0.1:{port}/"
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return parse_wrk(out)
    from minisys.http.loadgen import run_load

    result = asyncio.run(
        run_load("127.0.0.1", port, "/", connections=connections, duration=duration)
    )
    return result.rps, result.p99 * 1000


def result_line(
    name: str, ours: float, peer: float, target: float, higher_better: bool = True
) -> str:
    ratio = ours / peer if higher_better else peer / ours
    return f"RESULT {name}: ours={ours:.1f} peer={peer:.1f} ratio={ratio:.2f} target={target}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--app", action="store_true", help="serve ours through the web App")
    parser.add_argument("--streams", action="store_true", help="also measure a streams server")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        {
            "ours": lambda: serve_ours(args.port, args.app),
            "streams": lambda: serve_streams(args.port),
            "aiohttp": lambda: serve_aiohttp(args.port),
            "uvicorn": lambda: serve_uvicorn(args.port),
        }[args.serve]()
        return 0

    names = ["ours"]
    for peer in ("uvicorn", "aiohttp"):
        if importlib.util.find_spec(peer) is None:
            print(f"SKIP {peer}: not installed (pip install {peer})")
        else:
            names.append(peer)
    if args.streams:
        names.append("streams")
    driver = "wrk" if shutil.which("wrk") else "minisys.http.loadgen (wrk not installed)"
    print(
        f"driver: {driver}, {args.connections} connections, {args.duration}s x {args.rounds} rounds"
    )

    rps: dict[str, list[float]] = {n: [] for n in names}
    p99: dict[str, list[float]] = {n: [] for n in names}
    flags = ["--app"] if args.app else []
    procs = {
        n: ServerProcess("bench.http_server", "--serve", n, *flags, ready=(n,), timeout=30)
        for n in names
    }
    try:
        for proc in procs.values():
            proc.start()
        for proc in procs.values():
            drive(proc.port, 1.0, args.connections)  # warm up
        for r in range(args.rounds):
            order = names if r % 2 == 0 else list(reversed(names))
            for n in order:
                req, lat = drive(procs[n].port, args.duration, args.connections)
                rps[n].append(req)
                p99[n].append(lat)
                print(f"round {r + 1} {n:8} {req:9.0f} req/s  p99 {lat:7.2f} ms", flush=True)
    finally:
        for proc in procs.values():
            proc.terminate()

    med = {n: statistics.median(v) for n, v in rps.items()}
    med99 = {n: statistics.median(v) for n, v in p99.items()}
    if "streams" in med:
        print(
            f"INFO protocol_vs_streams: protocol={med['ours']:.0f} streams={med['streams']:.0f} "
            f"ratio={med['ours'] / med['streams']:.2f}"
        )
    if "uvicorn" in med:
        print(result_line("http_vs_uvicorn_h11", med["ours"], med["uvicorn"], 4.0))
    if "aiohttp" in med:
        print(result_line("http_vs_aiohttp", med["ours"], med["aiohttp"], 1.5))
        print(result_line("http_p99_vs_aiohttp_ms", med99["ours"], med99["aiohttp"], 1.0, False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
