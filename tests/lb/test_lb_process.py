"""`python -m lb` as a real process: health checks, a killed backend, the admin API, SIGTERM."""

import asyncio
import json
import time

import pytest

from minisys.testclients import exchange, http_request
from minisys.testing import ServerFailed, ServerProcess, async_wait_until

INTERVAL = 0.1
FALL = 2


def backend_named(stats: list, name: str) -> dict:
    return next(b for b in stats if b["name"] == name)


def test_killed_backend_is_taken_out_and_admin_controls_the_pool(kit):
    async def main():
        a = await kit.EchoBackend(b"A:").start()
        b = await kit.EchoBackend(b"B:").start()
        names = {f"127.0.0.1:{x.port}": x for x in (a, b)}
        name_a, name_b = (f"127.0.0.1:{x.port}" for x in (a, b))
        args = [
            "--admin-port", "0", "--algorithm", "roundrobin", "--health", "tcp",
            "--check-interval", str(INTERVAL), "--fall", str(FALL), "--rise", "1",
            "--eject-after", "0", "--backend", name_a, "--backend", name_b,
        ]  # fmt: skip
        # Started from a thread so that this loop keeps serving the backends meanwhile.
        proc = ServerProcess("lb", *args, ready=("lb", "lb-admin"))
        await asyncio.to_thread(proc.start)
        try:
            port, admin = proc.ports["lb"], proc.ports["lb-admin"]
            replies = {await exchange(port, b"hi") for _ in range(4)}
            assert replies == {b"A:hi", b"B:hi"}

            # Kill A: within fall × interval (plus jitter and slack) it is DOWN.
            await a.stop()
            killed = time.monotonic()

            async def a_is_down():
                _, stats = await http_request(admin, "GET", "/backends")
                return backend_named(stats, name_a)["health"] == "DOWN"

            await async_wait_until(a_is_down, timeout=10)
            assert time.monotonic() - killed <= FALL * INTERVAL * 1.1 + INTERVAL + 2.0
            _, stats = await http_request(admin, "GET", "/backends")
            down = backend_named(stats, name_a)
            failures = down["connect_failures"]
            # Health history on the stats page: the failed checks and the way down.
            assert down["check_failures"] >= FALL and down["down_transitions"] == 1
            assert down["last_checks"][-1]["ok"] is False
            assert "DOWN" in [h["event"] for h in down["history"]]
            assert down["bytes_in"] == down["bytes_out"] - 2 * down["total"] > 0
            # Every client is served (by B) and A gets no new connect attempts.
            for i in range(10):
                assert await exchange(port, b"%d" % i) == b"B:%d" % i
            _, stats = await http_request(admin, "GET", "/backends")
            assert backend_named(stats, name_a)["connect_failures"] == failures

            # Drain B: no backend left, new clients are closed; enable: served again.
            status, doc = await http_request(admin, "POST", f"/backends/{name_b}/drain")
            assert status == 200 and doc["status"] == "DRAIN"
            assert await exchange(port, b"x") == b""
            status, doc = await http_request(admin, "POST", f"/backends/{name_b}/enable")
            assert status == 200 and doc["admin"] == "ENABLED"
            assert await exchange(port, b"y") == b"B:y"

            # Add C at runtime, then remove it.
            c = await kit.EchoBackend(b"C:").start()
            name_c = f"127.0.0.1:{c.port}"
            body = json.dumps({"address": name_c, "weight": 1}).encode()
            status, doc = await http_request(admin, "POST", "/backends", body)
            assert status == 201 and doc["name"] == name_c
            assert (await http_request(admin, "POST", "/backends", body))[0] == 409
            assert {await exchange(port, b"z") for _ in range(4)} == {b"B:z", b"C:z"}
            status, _ = await http_request(admin, "DELETE", f"/backends/{name_c}")
            assert status == 200
            assert {await exchange(port, b"w") for _ in range(3)} == {b"B:w"}

            # Errors in the protocol's own form.
            assert (await http_request(admin, "GET", "/backends/10.0.0.1:1"))[0] == 404
            assert (await http_request(admin, "PUT", f"/backends/{name_b}/drain"))[0] == 405
            assert (await http_request(admin, "POST", "/backends", b"{"))[0] == 400

            # Stats and Prometheus text agree on the counters.
            _, stats = await http_request(admin, "GET", "/stats")
            assert stats["lb"]["accepted"] >= 20
            _, metrics = await http_request(admin, "GET", "/metrics")
            text = metrics.decode()
            assert f'lb_backend_up{{backend="{name_a}"}} 0' in text
            assert f'lb_backend_up{{backend="{name_b}"}} 1' in text
            assert "lb_connections_accepted_total" in text
            assert await asyncio.to_thread(proc.terminate) == 0
        finally:
            proc.kill()
        for x in (b, c):
            await x.stop()
        assert names

    asyncio.run(main())


def test_bad_flags_are_refused_clearly():
    with pytest.raises(ServerFailed, match="weight"):
        ServerProcess("lb", "--backend", "127.0.0.1:1,weight=0", "--admin-port", "-1").start()
