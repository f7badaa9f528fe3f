"""A stub upstream for the gateway's socket tests: it answers every request with what it saw.

GET  /anything          200 JSON {"port", "method", "target", "headers", "body"}
GET  /slow?ms=N         the same, after N milliseconds
GET  /status/NNN        status NNN
GET  /hop               a response full of hop-by-hop fields the gateway must strip
POST /__fail?on=1|0     from now on answer everything with 503 (or stop doing so)
GET  /__log             every request target seen so far (not itself logged)
"""

from __future__ import annotations

import argparse
import asyncio
import json

from minisys.http.message import Request, Response
from minisys.http.server import http_server
from minisys.server import add_server_arguments, run, serve, server_config_from_args

seen: list[str] = []
state = {"fail": False}


async def handle(request: Request) -> Response:
    if request.path == "/__log":
        return Response(200, [("Content-Type", "application/json")], json.dumps(seen).encode())
    if request.path == "/__fail":
        state["fail"] = request.query_param("on") == "1"
        return Response(204)
    seen.append(f"{request.method} {request.target}")
    if state["fail"]:
        return Response(503, [("Content-Type", "text/plain")], b"failing on purpose")
    if request.path == "/slow":
        await asyncio.sleep(int(request.query_param("ms", "0")) / 1000)
    if request.path.startswith("/status/"):
        return Response(int(request.path.rsplit("/", 1)[1]), [("X-Stub", "1")], b"status")
    if request.path == "/hop":
        return Response(
            200,
            [
                ("Connection", "X-Private"),
                ("X-Private", "secret"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Authenticate", "Basic"),
                ("Trailer", "X-Checksum"),
                ("Upgrade", "h2c"),
                ("X-Public", "ok"),
            ],
            b"hop",
        )
    doc = {
        "port": SERVER[0].address[1],
        "method": request.method,
        "target": request.target,
        "headers": [[n, v] for n, v in request.headers],
        "body": request.body.decode("latin-1"),
    }
    return Response(200, [("Content-Type", "application/json")], json.dumps(doc).encode())


SERVER: list = []


def main() -> int:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser, default_port=0)
    args = parser.parse_args()
    config = server_config_from_args(args)

    async def amain() -> None:
        SERVER.append(http_server("stub", config, handle))
        await serve(SERVER[0])

    return run(amain, component="stub", config=config)


if __name__ == "__main__":
    raise SystemExit(main())
