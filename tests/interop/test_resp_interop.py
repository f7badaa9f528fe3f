"""Real Redis clients against the RESP kernel's demo server, and the same bytes against a
real redis-server to check that our guesses about Redis's answers are right.

Cases parametrized with `real-redis` run against redis-server 7.0 itself: if one of those
fails, our expectation (and probably our server) is wrong, not Redis.
Everything skips, saying why, when redis-py / redis-cli / redis-server are not installed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from minisys.testing import ServerFailed, ServerProcess, redis_server

pytestmark = pytest.mark.interop

# How long a real tool may take on a loaded CI machine before we call it stuck.
TOOL_TIMEOUT = 60


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (apt package redis-tools / redis-server)")
    return path


def need_redis_py():
    return pytest.importorskip("redis", reason="redis-py is not installed (pip install redis)")


@pytest.fixture(scope="module")
def ours():
    with ServerProcess("minisys.resp", ready=["resp-demo"]) as proc:
        yield ("127.0.0.1", proc.port)


@pytest.fixture(scope="module")
def real_redis():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt package redis-server)")
    try:
        redis = redis_server("--databases", "1").start()
    except ServerFailed:
        pytest.skip("redis-server did not start")
    with redis:
        yield ("127.0.0.1", redis.port)


@pytest.fixture(params=["ours", "real-redis"])
def target(request):
    return request.getfixturevalue("ours" if request.param == "ours" else "real_redis")


def exchange(address, request_bytes: bytes, *, until: bytes = b"", size: int = 0) -> bytes:
    """Send raw bytes; read until the peer closes, or `size` bytes, or a reply ending in
    `until` arrived."""
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(request_bytes)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
            if (size and len(data) >= size) or (until and data.endswith(until)):
                break
        return data


PROTOCOL_ERRORS = [
    (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*1\r\n+PING\r\n", b"-ERR Protocol error: expected '$', got '+'\r\n"),
    (b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*1\r\n$-1\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*1\r\n$600000000\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b'SET k "abc\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
    (b"PING\r\n*x\r\n", b"+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*1\r\n$04\r\nPING\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (
        b"*1\r\n$4\r\nPING\r\n*1\r\nfoo\r\n",
        b"+PONG\r\n-ERR Protocol error: expected '$', got 'f'\r\n",
    ),
    (b"QUIT x\r\nPING\r\n", b"+OK\r\n"),
]


@pytest.mark.parametrize(("request_bytes", "reply"), PROTOCOL_ERRORS)
def test_protocol_errors_then_close(target, request_bytes, reply):
    assert exchange(target, request_bytes) == reply  # read until closed


REPLIES = [
    (b"PING\r\n", b"+PONG\r\n"),
    (b"PING\n", b"+PONG\r\n"),
    (b"\r\n*0\r\n*-1\r\nPING\r\n", b"+PONG\r\n"),
    (b"ECHO \"a\\x41\\n\" 'b'\r\n", b"-ERR wrong number of arguments for 'echo' command\r\n"),
    (b'ECHO "a\\x41\\n"\r\n', b"$3\r\naA\n\r\n"),
    (b"FOO bar\r\n", b"-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n"),
    (b"GET\r\n", b"-ERR wrong number of arguments for 'get' command\r\n"),
    (b"CLIENT FOO\r\n", b"-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n"),
    (b"HELLO 4\r\n", b"-NOPROTO unsupported protocol version\r\n"),
    (b"HELLO x\r\n", b"-ERR Protocol version is not an integer or out of range\r\n"),
    (b"SELECT 0\r\nSELECT 1\r\n", b"+OK\r\n-ERR DB index is out of range\r\n"),
    (b"SELECT x\r\n", b"-ERR value is not an integer or out of range\r\n"),
    (b"CONFIG GET save\r\n", b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
    (b"CONFIG GET appendonly\r\n", b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"),
    (b"CLIENT GETNAME\r\nCLIENT SETNAME x\r\nCLIENT GETNAME\r\n", b"$-1\r\n+OK\r\n$1\r\nx\r\n"),
    (b"ECHO\r\n", b"-ERR wrong number of arguments for 'echo' command\r\n"),
    (b"CLIENT\r\n", b"-ERR wrong number of arguments for 'client' command\r\n"),
    (b"CLIENT SETNAME\r\n", b"-ERR wrong number of arguments for 'client|setname' command\r\n"),
    (b"CONFIG GET\r\n", b"-ERR wrong number of arguments for 'config|get' command\r\n"),
    (b"COMMAND COUNT x\r\n", b"-ERR wrong number of arguments for 'command|count' command\r\n"),
    (
        b'HELLO 3 SETNAME "a b"\r\n',
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    ),
    (b"HELLO 3 SETNAME\r\n", b"-ERR Syntax error in HELLO option 'SETNAME'\r\n"),
    (b"AUTH a b c\r\n", b"-ERR syntax error\r\n"),
    (b"SELECT 99999999999999999999\r\n", b"-ERR value is not an integer or out of range\r\n"),
    (b"TIME x\r\n", b"-ERR wrong number of arguments for 'time' command\r\n"),
    (
        b"CONFIG SET foo bar\r\n",
        b"-ERR Unknown option or number of arguments for CONFIG SET - 'foo'\r\n",
    ),
    (b"INFO keyspace\r\n", b"$12\r\n# Keyspace\r\n\r\n"),
    (b"COMMAND INFO nosuch\r\n", b"*1\r\n$-1\r\n"),
    (
        b"FOO " + b"x" * 200 + b" y\r\n",
        b"-ERR unknown command 'FOO', with args beginning with: '" + b"x" * 128 + b"' \r\n",
    ),
    (b"HELLO 3\r\nGET nosuchkey\r\n", None),  # checked below: map then "_"
    (b"AUTH x\r\n", None),
    (b"QUIT\r\n", b"+OK\r\n"),
]


@pytest.mark.parametrize(("request_bytes", "reply"), REPLIES)
def test_replies_match_redis(target, request_bytes, reply):
    if reply is not None:
        assert exchange(target, request_bytes, size=len(reply)) == reply
        return
    if request_bytes.startswith(b"HELLO 3"):
        got = exchange(target, request_bytes, until=b"*0\r\n_\r\n")
        assert got.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n")
        assert b"$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:" in got
        assert got.endswith(
            b"$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster"
            b"\r\n$7\r\nmodules\r\n*0\r\n_\r\n"
        )
    else:  # AUTH without a password configured
        got = exchange(target, request_bytes, until=b"\r\n")
        assert got == (
            b"-ERR AUTH <password> called without any password configured for the default "
            b"user. Are you sure your configuration is correct?\r\n"
        )


def test_redis_cli_ping_and_commands(ours):
    cli = need("redis-cli")
    host, port = ours
    base = [cli, "-h", host, "-p", str(port)]

    def run_cli(*args: str) -> str:
        done = subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=True
        )
        return done.stdout.strip()

    assert run_cli("PING") == "PONG"
    assert run_cli("SET", "greeting", "hello world") == "OK"
    assert run_cli("GET", "greeting") == "hello world"
    hello = run_cli("-3", "HELLO", "3").splitlines()
    assert hello[:3] == ["server redis", "version 7.0.15", "proto 3"]
    assert "redis_version:7.0.15" in run_cli("INFO", "server")
    assert run_cli("-n", "0", "PING") == "PONG"
    assert run_cli("NOPE").startswith("ERR unknown command 'NOPE'")


@pytest.mark.parametrize("protocol", [3, 2])
def test_redis_py_default_and_resp2(ours, protocol):
    redis = need_redis_py()
    host, port = ours
    kwargs = {} if protocol == 3 else {"protocol": 2}
    client = redis.Redis(host=host, port=port, socket_timeout=10, **kwargs)
    try:
        assert client.ping() is True
        assert client.set("k", "v") is True
        assert client.get("k") == b"v"
        assert client.get("missing") is None
        assert client.delete("k", "missing") == 1
        assert client.config_get("save") == {"save": ""}
        assert client.info()["redis_version"] == "7.0.15"
        assert client.client_getname() is None
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command("NOPE")
        pipe = client.pipeline(transaction=False)
        pipe.set("a", 1).get("a").echo("x")
        assert pipe.execute() == [True, b"1", b"x"]
        assert client.connection_pool.get_connection().protocol in (protocol, str(protocol))
    finally:
        client.close()


def test_redis_py_with_password():
    redis = need_redis_py()
    with ServerProcess("minisys.resp", "--requirepass", "pw", ready=["resp-demo"]) as proc:
        for protocol in (3, 2):
            ok = redis.Redis(port=proc.port, password="pw", protocol=protocol, socket_timeout=10)
            assert ok.ping() is True
            ok.close()
        noauth = exchange(("127.0.0.1", proc.port), b"GET k\r\n", until=b"\r\n")
        assert noauth == b"-NOAUTH Authentication required.\r\n"


def test_redis_benchmark_ping_set_get(ours):
    bench = need("redis-benchmark")
    host, port = ours
    started = time.monotonic()
    done = subprocess.run(
        [bench, "-h", host, "-p", str(port), "-t", "ping,set,get", "-n", "2000", "-c", "5", "-q"],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout.replace("\r", "\n")
    for test in ("PING_INLINE", "PING_MBULK", "SET", "GET"):
        assert f"{test}: " in out and "requests per second" in out, out
    assert time.monotonic() - started < TOOL_TIMEOUT


def test_interactive_redis_cli_uses_our_command_docs(ours):
    """redis-cli in a terminal asks COMMAND DOCS for its hints and `help`; drive it via a pty."""
    cli = need("redis-cli")
    import os
    import pty
    import re
    import select

    host, port = ours
    pid, fd = pty.fork()
    if pid == 0:  # the child becomes redis-cli on the pty (and never runs pytest code)
        try:
            os.execv(cli, [cli, "-h", host, "-p", str(port)])
        finally:
            os._exit(127)
    seen = b""

    def read_until(marker: bytes, timeout: float = 15.0, count: int = 1) -> str:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                data = os.read(fd, 65536)
                seen += data
                for _ in range(data.count(b"\x1b[6n")):  # linenoise asks for the cursor
                    os.write(fd, b"\x1b[1;1R")
            plain = re.sub(rb"\x1b\[[0-9;]*[A-Za-z]", b"", seen)
            if plain.count(marker) >= count and plain.rstrip(b" ").endswith(prompt.strip()):
                return plain.decode(errors="replace")
        raise AssertionError(f"redis-cli never printed {marker!r}; got {seen[-500:]!r}")

    prompt = f"{host}:{port}> ".encode()
    try:
        read_until(prompt)
        os.write(fd, b"ping\r")
        read_until(b"PONG")
        os.write(fd, b"help get\r")
        assert "summary: Get the value of a key." in read_until(b"group: generic")
        os.write(fd, b"quit\r")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
