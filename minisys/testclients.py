"""Blocking raw protocol clients for byte-level tests: RESP and beanstalkd.

Where the tests stand: protocol tests send exact bytes to a server (ours, or the real
redis-server / beanstalkd on the other side of a parametrized fixture) and compare the
replies exactly as parsed, errors included, so a difference from the real product shows.
The asyncio clients in `minisys.resp.client` and `minisys.beanstalk.client` are what the
layers use; these are deliberately dumb: one socket, one parser, no retries, a timeout so
a hung server fails the test instead of hanging it. Re-exported by `minisys.testing`.
"""

from __future__ import annotations

import socket

from minisys.beanstalk.codec import Reply, ReplyParser
from minisys.resp import INCOMPLETE, RespParser, encode_command

# A reply slower than this means the server hung: a raw test client fails, never waits on.
RAW_CLIENT_TIMEOUT = 15.0


class RawRespClient:
    """A blocking RESP client that shows replies exactly as parsed values, errors included
    (a `RespError` is returned, not raised), for tests comparing byte-level behaviour."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = RAW_CLIENT_TIMEOUT
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.parser = RespParser()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> object:
        while True:
            value = self.parser.next_reply()
            if value is not INCOMPLETE:
                return value
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.parser.feed(chunk)

    def call(self, *args: object) -> object:
        self.send_raw(encode_command(*args))
        return self.read()

    def pipeline(self, commands: list[tuple]) -> list[object]:
        self.send_raw(b"".join(encode_command(*c) for c in commands))
        return [self.read() for _ in commands]

    def closed_by_server(self) -> bool:
        """True once the server has closed its side (recv returns b"")."""
        try:
            return self.sock.recv(1 << 16) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawRespClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawBeanstalkClient:
    """A blocking beanstalkd client that shows replies exactly as the server sent them."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = RAW_CLIENT_TIMEOUT
    ) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.parser = ReplyParser()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> Reply:
        while True:
            reply = self.parser.next_reply()
            if reply is not None:
                return reply
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.parser.feed(chunk)

    def request(self, data: bytes) -> Reply:
        """Send `data` (one or more commands) and return the first reply, parsed."""
        self.send(data)
        return self.reply()

    def raw_line(self) -> bytes:
        """The next reply exactly as bytes (line, and body when there is one)."""
        r = self.reply()
        line = " ".join([r.word, *(a.decode() for a in r.args)]).encode()
        if r.body is not None:
            return line + b"\r\n" + r.body + b"\r\n"
        return line + b"\r\n"

    def call(self, data: bytes) -> bytes:
        self.send(data)
        return self.raw_line()

    def nothing_pending(self, wait: float = 0.2) -> bool:
        """True if no reply arrives within `wait` (a blocked reserve, a swallowed line)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(1 << 16)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self.parser.feed(chunk)
        return False

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1 << 16) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()
