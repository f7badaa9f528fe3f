"""Below the splice: the lb's selector, its asyncio fallback, and the accept loop."""

import asyncio
import errno
import socket

import pytest

import lb.proxy
from lb.listener import ACCEPT_RETRY_DELAY, Listener
from minisys.poller import LoopPoller, ServingSelector, make_poller
from minisys.server import ServerConfig
from minisys.testing import async_wait_until


def _true(predicate):
    async def check():
        return predicate()

    return check


def test_poller_calls_readers_and_writers_and_forgets_them():
    async def main():
        poller = make_poller(asyncio.get_running_loop())
        assert isinstance(poller, ServingSelector)  # the lb's own loop (conftest)
        a, b = socket.socketpair()
        a.setblocking(False)
        calls = []
        poller.add_reader(a.fileno(), lambda: calls.append(("read", a.recv(100))))
        poller.add_writer(a.fileno(), lambda: calls.append(("write", None)))
        await async_wait_until(_true(lambda: ("write", None) in calls), timeout=5)
        poller.remove_writer(a.fileno())
        calls.clear()
        b.send(b"hello")
        await async_wait_until(_true(lambda: calls), timeout=5)
        assert calls == [("read", b"hello")]
        poller.remove_reader(a.fileno())
        poller.remove_reader(a.fileno())  # removing twice is harmless
        calls.clear()
        b.send(b"again")
        await asyncio.sleep(0.05)  # nothing must arrive: there is no event to wait for
        assert calls == []
        a.close()
        b.close()

    asyncio.run(main())


def test_a_failing_callback_is_reported_and_the_loop_goes_on():
    async def main():
        loop = asyncio.get_running_loop()
        reported = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        poller = make_poller(loop)
        a, b = socket.socketpair()
        a.setblocking(False)

        def broken():
            a.recv(100)
            raise ValueError("boom")

        poller.add_reader(a.fileno(), broken)
        b.send(b"x")
        await async_wait_until(_true(lambda: reported), timeout=5)
        assert isinstance(reported[0]["exception"], ValueError)
        poller.remove_reader(a.fileno())
        await asyncio.sleep(0)  # the loop still runs
        a.close()
        b.close()

    asyncio.run(main())


@pytest.mark.parametrize("poller", ["selector", "loop"])
def test_the_splice_works_on_either_poller(kit, monkeypatch, poller):
    """The asyncio fallback (no epoll, not Linux) passes bytes and EOFs the same way."""
    if poller == "loop":
        monkeypatch.setattr(lb.proxy, "make_poller", LoopPoller)

    async def main():
        echo = await kit.EchoBackend(b"tag:").start()
        async with kit.running_lb([kit.make_backend(echo.port)]) as (server, balancer):
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"y" * 300_000)
            writer.write_eof()
            assert await kit.read_all(reader) == b"tag:" + b"y" * 300_000
            assert (type(balancer.poller) is LoopPoller) == (poller == "loop")
            writer.close()
            await async_wait_until(_true(lambda: not server.connections), timeout=5)
        await echo.stop()

    asyncio.run(main())


class OutOfDescriptors:
    """A listening socket whose accept() fails as it does when the process hits its limit."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.family = real.family
        self.calls = 0

    def fileno(self) -> int:
        return self.real.fileno()

    def accept(self):
        self.calls += 1
        raise OSError(errno.EMFILE, "Too many open files")

    def close(self) -> None:
        self.real.close()


def test_accept_pauses_when_out_of_descriptors_and_resumes():
    async def main():
        loop = asyncio.get_running_loop()
        listener = Listener("lb", ServerConfig(idle_timeout=0), lambda *a: None)
        await listener.start()
        fake = OutOfDescriptors(listener.listening)
        loop.remove_reader(fake.fileno())
        listener.listening = fake
        loop.add_reader(fake.fileno(), listener._accept)
        client = socket.create_connection(listener.address)
        await async_wait_until(_true(lambda: fake.calls == 1), timeout=5)
        await asyncio.sleep(ACCEPT_RETRY_DELAY / 2)
        assert fake.calls == 1  # not spinning on the readable socket meanwhile
        await async_wait_until(_true(lambda: fake.calls == 2), timeout=5)
        client.close()
        listener.config.drain_timeout = 0.1
        await listener.drain_and_close()

    asyncio.run(main())
