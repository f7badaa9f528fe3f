"""Active probes against real sockets, and the --backend / --health flag parsers."""

import asyncio
import socket

import pytest

from lb.backend import MAX_WEIGHT, parse_backend
from lb.checks import HealthChecker, parse_health_spec, probe
from lb.health import Health, HealthSettings
from minisys.proxyproto import parse_v1


async def http_backend(reply: bytes, seen: list[bytes] | None = None):
    async def handle(reader, writer):
        data = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(data)
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("reply", "ok", "detail"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True, "HTTP 200"),
        (b"HTTP/1.0 302 Found\r\n\r\n", True, "HTTP 302"),
        (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", False, "HTTP 503"),
        (b"-ERR not http\r\n", False, "not an HTTP response"),
        (b"", False, "not an HTTP response"),
    ],
)
def test_http_probe_statuses(kit, reply, ok, detail):
    async def main():
        server, port = await http_backend(reply)
        backend = kit.make_backend(port)
        assert await probe(backend, "http", "/healthz", 2.0) == (ok, detail)
        server.close()

    asyncio.run(main())


def test_http_probe_sends_proxy_line_and_get(kit):
    async def main():
        seen = []
        server, port = await http_backend(b"HTTP/1.1 204 No Content\r\n\r\n", seen)
        backend = kit.make_backend(port)
        assert (await probe(backend, "http", "/ready", 2.0, send_proxy=True))[0]
        header, used = parse_v1(seen[0])
        assert header.dst_port == port
        assert seen[0][used:].startswith(b"GET /ready HTTP/1.0\r\n")
        server.close()

    asyncio.run(main())


def test_tcp_probe_refused_and_timeout(kit):
    async def main():
        dead = kit.make_backend(await kit.unused_port())
        ok, detail = await probe(dead, "tcp", "", 1.0)
        assert not ok and "refused" in detail
        # A backend that accepts but never answers an HTTP check times out.
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        mute = kit.make_backend(silent.sockets[0].getsockname()[1])
        assert await probe(mute, "http", "/healthz", 0.05) == (False, "timeout")
        silent.close()

    asyncio.run(main())


def test_checker_takes_a_failing_backend_down_and_back(kit):
    async def main():
        replies = [b"HTTP/1.1 500 Oops\r\n\r\n"]

        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(replies[0])
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        backend = kit.make_backend(port, interval=0.02, fall=2, rise=2)
        async with kit.running_lb([backend]) as (_, balancer):
            checker = HealthChecker(balancer.pool, "http", "/healthz")
            checker.start()
            while backend.health.state != Health.DOWN:
                await asyncio.sleep(0.01)
            replies[0] = b"HTTP/1.1 200 OK\r\n\r\n"
            while backend.health.state != Health.UP:
                await asyncio.sleep(0.01)
            await checker.stop()
            assert backend.health.down_transitions == 1
        server.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_parse_backend():
    b = parse_backend("127.0.0.1:8081,weight=3,maxconn=10")
    assert (b.name, b.weight, b.maxconn) == ("127.0.0.1:8081", 3, 10)
    assert parse_backend("[::1]:80").name == "::1:80"
    assert parse_backend("localhost:80").host == "127.0.0.1"
    for bad in [
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "127.0.0.1:８０",
        "example.com:80",
        "127.0.0.1:80,weight=0",
        f"127.0.0.1:80,weight={MAX_WEIGHT + 1}",
        "127.0.0.1:80,weight=-1",
        "127.0.0.1:80,colour=blue",
    ]:
        with pytest.raises(ValueError):
            parse_backend(bad)


def test_parse_health_spec():
    assert parse_health_spec("tcp") == ("tcp", "")
    assert parse_health_spec("http:/healthz") == ("http", "/healthz")
    for bad in ["http", "http:healthz", "udp", "http:/a b"]:
        with pytest.raises(ValueError):
            parse_health_spec(bad)
    with pytest.raises(ValueError):
        HealthSettings(fall=0)


def test_ipv6_backend_is_spliced(kit):
    try:
        probe_sock = socket.socket(socket.AF_INET6)
        probe_sock.bind(("::1", 0))
        probe_sock.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")

    async def main():
        async def echo(reader, writer):
            writer.write(await reader.read())
            writer.close()

        server = await asyncio.start_server(echo, "::1", 0)
        backend = parse_backend(f"[::1]:{server.sockets[0].getsockname()[1]}")
        async with kit.running_lb([backend]) as (lb, _):
            reader, writer = await asyncio.open_connection(*lb.address)
            writer.write(b"six")
            writer.write_eof()
            assert await kit.read_all(reader) == b"six"
            writer.close()
        server.close()

    asyncio.run(main())
