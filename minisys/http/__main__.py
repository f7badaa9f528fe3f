"""`python -m minisys.http`: a small demo HTTP server, to poke at the engine by hand.

Not on the request's journey itself: it runs the same server and web framework the
appserver and gateway use, with a few routes that show its behaviour with real clients:

    python -m minisys.http --port 8000
    curl -i localhost:8000/hello
    curl -i -X POST --data-binary '{"a": 1}' localhost:8000/echo
    curl -i -H 'Transfer-Encoding: chunked' --data-binary @README.md localhost:8000/echo
    printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: +5\\r\\n\\r\\n' | nc localhost 8000
    wrk -c50 -d5 http://localhost:8000/hello
"""

from __future__ import annotations

import argparse
import asyncio

from minisys.http.message import Request, Response, json_response
from minisys.http.server import HttpSettings, http_server
from minisys.http.web import App
from minisys.server import add_server_arguments, run, serve, server_config_from_args

DEFAULT_PORT = 8000


def demo_app() -> App:
    app = App("http-demo")

    @app.get("/hello")
    async def hello(request: Request) -> Response:
        return json_response({"message": "Hello, World!"})

    @app.route(["POST", "PUT"], "/echo")
    async def echo(request: Request) -> Response:
        content_type = request.headers.get("content-type", "application/octet-stream")
        return Response(200, [("Content-Type", content_type)], request.body)

    @app.get("/stream/{count}")
    async def stream(request: Request) -> Response:
        count = min(int(request.params["count"]) if request.params["count"].isdecimal() else 0, 100)

        async def lines():
            for i in range(count):
                yield b"line %d\n" % i
                await asyncio.sleep(0.05)

        return Response(200, [("Content-Type", "text/plain")], lines())

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minisys.http", description=__doc__.split("\n")[0]
    )
    add_server_arguments(parser, default_port=DEFAULT_PORT)
    parser.add_argument("--header-timeout", type=float, default=HttpSettings.header_timeout)
    parser.add_argument("--handler-timeout", type=float, default=HttpSettings.handler_timeout)
    args = parser.parse_args(argv)
    config = server_config_from_args(args)
    settings = HttpSettings(
        header_timeout=args.header_timeout, handler_timeout=args.handler_timeout
    )

    async def start() -> None:
        await serve(http_server("http", config, demo_app(), settings=settings))

    return run(start, component="http", config=config)


if __name__ == "__main__":
    raise SystemExit(main())
