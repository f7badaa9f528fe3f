"""Raw protocol clients for byte-level tests: RESP and beanstalkd (blocking), and one-shot
asyncio exchanges (bytes to a TCP service, an HTTP request to an admin port).

Where the tests stand: protocol tests send exact bytes to a server (ours, or the real
redis-server / beanstalkd on the other side of a parametrized fixture) and compare the
replies exactly as parsed, errors included, so a difference from the real product shows.
The asyncio clients in `minisys.resp.client` and `minisys.beanstalk.client` are what the
layers use; these are deliberately dumb: one socket, one parser, no retries, a timeout so
a hung server fails the test instead of hanging it. Re-exported by `minisys.testing`.
"""

from __future__ import annotations

import asyncio
import json
import socket

from minisys.beanstalk.codec import Reply, ReplyParser
from minisys.resp import INCOMPLETE, RespParser, encode_command

# A reply slower than this means the server hung: a raw test client fails, never waits on.
RAW_CLIENT_TIMEOUT = 15.0


# Bytes asked of the socket per read.
READ_SIZE = 1 << 16


class _RawClient:
    """One blocking socket and one sans-I/O reply parser; subclasses say how to parse."""

    INCOMPLETE: object = None  # what the parser's next_reply() returns while it needs bytes

    def __init__(self, port: int, host: str, timeout: float, parser) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.parser = parser

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _next_reply(self):
        """The next reply, reading from the socket until the parser has one whole."""
        while True:
            reply = self.parser.next_reply()
            if reply is not self.INCOMPLETE:
                return reply
            chunk = self.sock.recv(READ_SIZE)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.parser.feed(chunk)

    def nothing_pending(self, wait: float = 0.2) -> bool:
        """True if no reply arrives within `wait` (a blocked reserve, a swallowed line)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(READ_SIZE)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self.parser.feed(chunk)
        return False

    def closed_by_server(self) -> bool:
        """True once the server has closed its side (recv returns b"")."""
        try:
            return self.sock.recv(READ_SIZE) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawRespClient(_RawClient):
    """A blocking RESP client that shows replies exactly as parsed values, errors included
    (a `RespError` is returned, not raised), for tests comparing byte-level behaviour."""

    INCOMPLETE = INCOMPLETE  # None is a valid RESP reply (a null bulk string)

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = RAW_CLIENT_TIMEOUT
    ) -> None:
        super().__init__(port, host, timeout, RespParser())

    def send_raw(self, data: bytes) -> None:
        self.send(data)

    def read(self) -> object:
        return self._next_reply()

    def call(self, *args: object) -> object:
        self.send(encode_command(*args))
        return self.read()

    def pipeline(self, commands: list[tuple]) -> list[object]:
        self.send(b"".join(encode_command(*c) for c in commands))
        return [self.read() for _ in commands]


class RawBeanstalkClient(_RawClient):
    """A blocking beanstalkd client that shows replies exactly as the server sent them."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = RAW_CLIENT_TIMEOUT
    ) -> None:
        super().__init__(port, host, timeout, ReplyParser())

    def reply(self) -> Reply:
        return self._next_reply()

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


async def exchange(port: int, message: bytes, host: str = "127.0.0.1") -> bytes:
    """Send `message`, half-close, and return all the peer sends back before it closes
    (b"" when it resets the connection instead, as a proxy refusing us does)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(message)
        writer.write_eof()
        async with asyncio.timeout(RAW_CLIENT_TIMEOUT):
            data = await reader.read()
    except OSError:
        data = b""
    writer.close()
    return data


async def http_request(
    port: int, method: str, path: str, body: bytes = b"", host: str = "127.0.0.1"
) -> tuple[int, object]:
    """One `Connection: close` HTTP request: (status, the body as JSON, or raw bytes)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    async with asyncio.timeout(RAW_CLIENT_TIMEOUT):
        raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload
