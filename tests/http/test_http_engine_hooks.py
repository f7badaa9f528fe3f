"""The HTTP server's extension points: a custom connection class via `connection_factory`."""

from __future__ import annotations

import socket

from minisys.http.message import Request, Response
from minisys.http.server import HttpConnection, HttpSettings, http_server
from minisys.http.testkit import ServerThread, read_responses
from minisys.server import ServerConfig

GET_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def send(port: int, data: bytes) -> tuple[list[tuple[int, bytes]], bool, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        return read_responses(s)


async def echo_peer(request: Request) -> Response:
    return Response(200, [("X-Peer", str(request.peer[0]))], b"ok")


class Tagging(HttpConnection):
    """Swallows a one-line preamble before HTTP, as the gateway's PROXY v1 reader does."""

    made: list[HttpSettings] = []

    def __init__(self, handler, settings: HttpSettings) -> None:
        super().__init__(handler, settings)
        Tagging.made.append(settings)
        self._preamble = True

    def on_data(self, data: bytes) -> None:
        if self._preamble:
            line, _, data = data.partition(b"\n")
            self._preamble = False
            self.peer = (line.decode().strip(), 0)
        if data:
            super().on_data(data)


def test_connection_factory_builds_each_connection_with_the_servers_handler_and_settings():
    settings = HttpSettings(server_header="hooked")
    cfg = ServerConfig(idle_timeout=0)
    build = lambda c: http_server(  # noqa: E731
        "t", c, echo_peer, settings=settings, connection_factory=Tagging
    )
    with ServerThread(build, cfg) as srv:
        statuses, closed, raw = send(srv.port, b"198.51.100.7\n" + GET_CLOSE)
    assert [s for s, _ in statuses] == [200] and closed
    assert b"X-Peer: 198.51.100.7\r\n" in raw and b"Server: hooked\r\n" in raw
    assert Tagging.made == [settings]


def test_default_connection_is_plain_http():
    cfg = ServerConfig(idle_timeout=0)
    with ServerThread(lambda c: http_server("t", c, echo_peer), cfg) as srv:
        statuses, _, raw = send(srv.port, GET_CLOSE)
    assert [s for s, _ in statuses] == [200] and b"X-Peer: 127.0.0.1\r\n" in raw
