"""Bad input: each gets Redis's error (and, for protocol errors, a closed connection),
while the server keeps serving everyone else. Run against kvcache and the real Redis."""

from __future__ import annotations

import pytest

from minisys.resp import RespError, SimpleString
from minisys.testing import ServerProcess

PONG = SimpleString("PONG")


def protocol_error(connect, port: int, data: bytes, text: str) -> None:
    """Send `data`, expect `-ERR Protocol error: <text>` then a close; others unharmed."""
    bystander = connect(port)
    bad = connect(port)
    bad.send_raw(data)
    assert bad.read() == RespError(f"ERR Protocol error: {text}")
    assert bad.closed_by_server()
    bad.close()
    assert bystander.call("PING") == PONG
    with connect(port) as fresh:
        assert fresh.call("PING") == PONG
    bystander.close()


def test_garbage_multibulk_length(connect, server: int) -> None:
    protocol_error(connect, server, b"*abc\r\n", "invalid multibulk length")


def test_wrong_type_inside_multibulk(connect, server: int) -> None:
    protocol_error(connect, server, b"*1\r\n+PING\r\n", "expected '$', got '+'")


def test_one_gigabyte_bulk_length(connect, server: int) -> None:
    protocol_error(connect, server, b"*2\r\n$3\r\nGET\r\n$1073741824\r\n", "invalid bulk length")


def test_negative_bulk_length(connect, server: int) -> None:
    protocol_error(connect, server, b"*1\r\n$-1\r\n", "invalid bulk length")


def test_unbalanced_quotes_inline(connect, server: int) -> None:
    protocol_error(connect, server, b'SET k "abc\r\n', "unbalanced quotes in request")


def test_binary_garbage_then_server_still_serves(connect, server: int) -> None:
    c = connect(server)
    c.send_raw(bytes(range(1, 32)) + b"\xff\xfe*\r\n")
    reply = c.read()
    assert isinstance(reply, RespError)
    c.close()
    with connect(server) as fresh:
        assert fresh.call("PING") == PONG


def test_inline_commands(client) -> None:
    client.send_raw(b'SET k "hello world"\r\nGET k\nPING\r\n\r\n')
    assert [client.read() for _ in range(3)] == [SimpleString("OK"), b"hello world", PONG]


def test_million_element_multibulk(client) -> None:
    n = 1_000_000
    head = b"*%d\r\n$3\r\nDEL\r\n" % (n + 1)
    client.send_raw(head + b"$1\r\na\r\n" * n)
    assert client.read() == 0
    assert client.call("PING") == PONG


def test_wrong_arity_and_types_mid_pipeline_keep_the_connection(client) -> None:
    replies = client.pipeline(
        [("SET", "s", "abc"), ("INCR", "s"), ("GET",), ("EXPIRE", "s", "x"), ("GET", "s")]
    )
    assert replies == [
        SimpleString("OK"),
        RespError("ERR value is not an integer or out of range"),
        RespError("ERR wrong number of arguments for 'get' command"),
        RespError("ERR value is not an integer or out of range"),
        b"abc",
    ]


@pytest.fixture(params=["kvcache", pytest.param("redis", marks=pytest.mark.interop)])
def password_server(request: pytest.FixtureRequest):
    if request.param == "kvcache":
        with ServerProcess("kvcache", "--requirepass", "s3cret") as proc:
            yield proc.port
        return
    redis = request.getfixturevalue("redis_process")("--requirepass", "s3cret")
    try:
        yield redis.port
    finally:
        redis.stop()


def test_requirepass_needs_auth(connect, password_server: int) -> None:
    c = connect(password_server)
    assert c.call("GET", "k") == RespError("NOAUTH Authentication required.")
    assert c.call("AUTH", "wrong") == RespError(
        "WRONGPASS invalid username-password pair or user is disabled."
    )
    assert c.call("AUTH", "s3cret") == SimpleString("OK")
    assert c.call("SET", "k", "v") == SimpleString("OK")
    assert c.call("GET", "k") == b"v"
    c.close()
