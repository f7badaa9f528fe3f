"""The same splice behaviour checked against our lb and against HAProxy `mode tcp`.

If a case passes for ours and fails for "haproxy", our idea of what an L4 proxy does was
wrong; the haproxy cases are skipped when haproxy is not installed.
"""

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minisys.proxyproto import parse_v1
from minisys.testing import RealServer, ServerFailed, free_port

HAPROXY_CONF = """
global
    maxconn 100
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout client-fin 10s
    timeout server-fin 10s
frontend test
    bind 127.0.0.1:{port}
    default_backend app
backend app
    server app1 127.0.0.1:{backend}{proxy}
"""


@contextlib.contextmanager
def haproxy(backend: int, send_proxy: bool):
    path = shutil.which("haproxy")
    if path is None:
        pytest.skip("haproxy is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp, "haproxy.cfg")
        proxy = " send-proxy" if send_proxy else ""
        conf.write_text(HAPROXY_CONF.format(port=port, backend=backend, proxy=proxy))
        try:
            proc = RealServer([path, "-db", "-f", str(conf)], port, ready=_listens).start()
        except ServerFailed as exc:
            pytest.fail(f"haproxy did not start: {exc}")
        with proc:
            yield ("127.0.0.1", port)


def _listens(port: int) -> bool:
    """Whether something listens on the port, seen without opening a connection through
    it (a connection to haproxy would reach the backend and disturb the test)."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    return f"127.0.0.1:{port} " in out


@contextlib.asynccontextmanager
async def proxy_for(kind: str, kit, backend_port: int, send_proxy: bool = False):
    if kind == "ours":
        backend = kit.make_backend(backend_port)
        async with kit.running_lb([backend], send_proxy=send_proxy) as (server, _):
            yield server.address
    else:
        if shutil.which("ss") is None:
            pytest.skip("ss (iproute2) is needed to see when haproxy listens")
        with haproxy(backend_port, send_proxy) as address:
            yield address


KINDS = ["ours", pytest.param("haproxy", marks=pytest.mark.interop)]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=5)
@given(chunks=st.lists(st.binary(min_size=1, max_size=30000), min_size=1, max_size=5))
def test_bytes_intact_both_ways(kit, kind, chunks):
    async def main():
        echo = await kit.EchoBackend().start()
        async with proxy_for(kind, kit, echo.port) as address:
            reader, writer = await asyncio.open_connection(*address)
            for chunk in chunks:
                writer.write(chunk)
            writer.write_eof()
            assert await kit.read_all(reader) == b"".join(chunks)
            writer.close()
        await echo.stop()

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_client_half_close_still_gets_the_answer(kit, kind):
    async def main():
        async def late_answer(reader, writer):
            data = await reader.read()
            writer.write(b"got %d" % len(data))
            await writer.drain()
            writer.close()

        backend = await asyncio.start_server(late_answer, "127.0.0.1", 0)
        async with proxy_for(kind, kit, backend.sockets[0].getsockname()[1]) as address:
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"q" * 5000)
            writer.write_eof()
            assert await kit.read_all(reader) == b"got 5000"
            writer.close()
        backend.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_send_proxy_line_shape(kit, kind):
    async def main():
        echo = await kit.EchoBackend().start()
        async with proxy_for(kind, kit, echo.port, send_proxy=True) as address:
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"data")
            writer.write_eof()
            echoed = await kit.read_all(reader)
            header, used = parse_v1(echoed)
            client = writer.get_extra_info("sockname")
            assert header.protocol == "TCP4"
            assert header.source == (client[0], client[1])
            assert (header.dst_host, header.dst_port) == address
            assert echoed[used:] == b"data"
            writer.close()
        await echo.stop()

    asyncio.run(main())
