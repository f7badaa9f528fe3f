"""`python -m lb --workers 2`: every worker serves, the admin speaks for all, no orphans."""

import asyncio
import json
import os
import signal
import socket
import sys

import pytest

from lb.fanout import merge_backend_lists, merge_metrics, merge_stats
from minisys.testclients import exchange, http_request
from minisys.testing import REPO_ROOT, ServerProcess, async_wait_until, pid_alive

WORKERS = 2


async def start_lb(*backends: str, extra: tuple = ()) -> ServerProcess:
    args = ["--workers", str(WORKERS), "--admin-port", "0", "--health", "none"]
    for name in backends:
        args += ["--backend", name]
    proc = ServerProcess("lb", *args, *extra, ready=("lb", "lb-admin"))
    # Started from a thread so that this loop keeps serving the test's backends.
    await asyncio.to_thread(proc.start)
    return proc


async def worker_pids(admin: int) -> list[int]:
    status, stats = await http_request(admin, "GET", "/stats")
    if status == 503:  # every worker is restarting
        return []
    return [w["pid"] for w in stats["lb"]["workers"]]


def test_every_worker_serves_and_admin_changes_reach_all(kit):
    async def main():
        a = await kit.EchoBackend(b"A:").start()
        b = await kit.EchoBackend(b"B:").start()
        name_a, name_b = (f"127.0.0.1:{x.port}" for x in (a, b))
        proc = await start_lb(name_a, name_b, extra=("--algorithm", "roundrobin"))
        try:
            port, admin = proc.ports["lb"], proc.ports["lb-admin"]
            replies = [await exchange(port, b"%d" % i) for i in range(40)]
            assert all(r in (b"A:%d" % i, b"B:%d" % i) for i, r in enumerate(replies))
            _, stats = await http_request(admin, "GET", "/stats")
            workers = stats["lb"]["workers"]
            assert len(workers) == WORKERS and stats["lb"]["workers_answering"] == WORKERS
            # The kernel spread the 40 connections over both workers' sockets.
            assert all(w["accepted"] > 0 for w in workers), workers
            assert stats["lb"]["accepted"] == sum(w["accepted"] for w in workers) == 40
            # Each worker leads its own process group (a terminal's Ctrl-C reaches only the
            # master) but stays in the master's session: the kernel's autogroup scheduling
            # then treats them as one program instead of one group per worker.
            for pid in (w["pid"] for w in workers):
                assert os.getpgid(pid) == pid != os.getpgid(proc.pid)
                assert os.getsid(pid) == os.getsid(proc.pid)
            backends = {x["name"]: x for x in stats["backends"]}
            assert backends[name_a]["total"] + backends[name_b]["total"] == 40
            assert len(backends[name_a]["workers"]) == WORKERS

            # Drain B through the master: no worker sends it new clients.
            status, doc = await http_request(admin, "POST", f"/backends/{name_b}/drain")
            assert status == 200 and doc["status"] == "DRAIN"
            assert [w["status"] for w in doc["workers"]] == ["DRAIN"] * WORKERS
            assert {await exchange(port, b"x") for _ in range(20)} == {b"A:x"}

            # Add C, remove A: every worker agrees.
            c = await kit.EchoBackend(b"C:").start()
            name_c = f"127.0.0.1:{c.port}"
            body = json.dumps({"address": name_c}).encode()
            assert (await http_request(admin, "POST", "/backends", body))[0] == 201
            assert (await http_request(admin, "POST", "/backends", body))[0] == 409
            assert (await http_request(admin, "DELETE", f"/backends/{name_a}"))[0] == 200
            assert {await exchange(port, b"y") for _ in range(20)} == {b"C:y"}
            _, listed = await http_request(admin, "GET", "/backends")
            assert {x["name"]: x["status"] for x in listed} == {name_b: "DRAIN", name_c: "UP"}

            # Errors come from the workers, unchanged.
            assert (await http_request(admin, "GET", "/backends/10.0.0.1:1"))[0] == 404
            assert (await http_request(admin, "PUT", f"/backends/{name_b}/drain"))[0] == 405

            # Prometheus: every sample labelled with its worker.
            _, metrics = await http_request(admin, "GET", "/metrics")
            text = metrics.decode()
            for i in range(WORKERS):
                assert f'lb_backend_up{{worker="{i}",backend="{name_c}"}} 1' in text
            assert text.count("# TYPE lb_backend_up gauge") == 1
            assert await asyncio.to_thread(proc.terminate) == 0
        finally:
            proc.kill()
        for x in (a, b, c):
            await x.stop()

    asyncio.run(main())


def test_a_killed_worker_is_replaced_and_a_killed_master_leaves_no_orphans(kit):
    async def main():
        a = await kit.EchoBackend(b"A:").start()
        b = await kit.EchoBackend(b"B:").start()
        name_a, name_b = (f"127.0.0.1:{x.port}" for x in (a, b))
        proc = await start_lb(name_a, name_b)
        try:
            port, admin = proc.ports["lb"], proc.ports["lb-admin"]
            assert (await http_request(admin, "POST", f"/backends/{name_a}/disable"))[0] == 200
            before = await worker_pids(admin)
            os.kill(before[0], signal.SIGKILL)

            async def replaced():
                pids = await worker_pids(admin)
                return len(pids) == WORKERS and before[0] not in pids

            await async_wait_until(replaced, timeout=15)
            # The replacement got the admin change: A stays out of rotation everywhere.
            _, doc = await http_request(admin, "GET", f"/backends/{name_a}")
            assert [w["status"] for w in doc["workers"]] == ["MAINT"] * WORKERS
            assert {await exchange(port, b"z") for _ in range(20)} == {b"B:z"}
            _, stats = await http_request(admin, "GET", "/stats")
            assert stats["lb"]["worker_restarts"] == 1
            pids = await worker_pids(admin)
            # Now kill the master itself: the kernel tells the workers (PR_SET_PDEATHSIG),
            # which drain and exit; nothing is left behind.
            proc.kill()

            async def orphans_gone():
                return not any(pid_alive(p) for p in pids)

            await async_wait_until(orphans_gone, timeout=10)
        finally:
            proc.kill()
        for x in (a, b):
            await x.stop()

    asyncio.run(main())


def test_sigterm_drains_every_worker_and_a_crash_loop_exits_loudly(kit):
    async def main():
        a = await kit.EchoBackend().start()
        proc = await start_lb(f"127.0.0.1:{a.port}")
        try:
            port, admin = proc.ports["lb"], proc.ports["lb-admin"]
            # Open spliced connections until both workers hold at least one.
            held = []
            for _ in range(40):
                held.append(await asyncio.open_connection("127.0.0.1", port))
                held[-1][1].write(b"hi")
                assert await held[-1][0].readexactly(2) == b"hi"
                _, stats = await http_request(admin, "GET", "/stats")
                if all(w["active"] > 0 for w in stats["lb"]["workers"]):
                    break
            else:
                pytest.fail("the connections all went to one worker")
            pids = await worker_pids(admin)
            proc.signal(signal.SIGTERM)
            # Draining: the open connections still work, in every worker.
            for reader, writer in held:
                writer.write(b"still")
                assert await reader.readexactly(5) == b"still"
                writer.close()
            code = await asyncio.to_thread(proc.proc.wait, 15)
            assert code == 0
            assert not any(pid_alive(p) for p in pids)
        finally:
            proc.kill()

        # A worker that keeps dying: the master gives up, says so and exits 1.
        proc = await start_lb(f"127.0.0.1:{a.port}")
        try:
            admin = proc.ports["lb-admin"]
            killed: set[int] = set()
            while proc.alive():
                try:
                    pids = await worker_pids(admin)
                except OSError:
                    break  # the master stopped answering: it is going down
                for pid in set(pids) - killed:
                    killed.add(pid)
                    os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.05)
            code = await asyncio.to_thread(proc.proc.wait, 20)
            assert code == 1
            assert "giving up, stopping the lb" in proc.output_tail()
            assert not any(pid_alive(p) for p in killed)
        finally:
            proc.kill()
        await a.stop()

    asyncio.run(main())


def test_merging_is_truthful():
    def snap(name, status, active):
        return {
            "name": name, "status": status, "admin": "ENABLED", "health": "UP",
            "weight": 1, "effective_weight": 1.0, "maxconn": 0, "active": active,
            "max_active": active, "total": 10, "bytes_in": 1, "bytes_out": 2,
            "connect_failures": 0, "check_failures": 1, "down_transitions": 0,
            "ejections": 0, "last_checks": [], "history": [],
        }  # fmt: skip

    merged = merge_backend_lists([[snap("x", "UP", 1)], [snap("x", "DOWN 1/2", 2)]])
    assert merged[0]["status"] == "MIXED" and merged[0]["active"] == 3
    assert [w["status"] for w in merged[0]["workers"]] == ["UP", "DOWN 1/2"]
    # A backend only one worker has is MIXED, not silently UP.
    merged = merge_backend_lists([[snap("x", "UP", 0), snap("y", "UP", 0)], [snap("x", "UP", 0)]])
    assert {m["name"]: m["status"] for m in merged} == {"x": "UP", "y": "MIXED"}
    stats = merge_stats(
        [{"lb": {"accepted": 3, "max_queue": 2, "algorithm": "RoundRobin"}, "backends": []},
         {"lb": {"accepted": 4, "max_queue": 5, "algorithm": "RoundRobin"}, "backends": []}],
        [11, 12],
    )  # fmt: skip
    assert stats["lb"]["accepted"] == 7 and stats["lb"]["max_queue"] == 5
    assert [w["pid"] for w in stats["lb"]["workers"]] == [11, 12]
    text = merge_metrics(
        ["# HELP a A.\n# TYPE a counter\na 1\n", "# HELP a A.\n# TYPE a counter\na 2\n"]
    )
    assert text == '# HELP a A.\n# TYPE a counter\na{worker="0"} 1\na{worker="1"} 2\n'


def test_worker_count_is_bounded():
    from minisys.testing import ServerFailed

    with pytest.raises(ServerFailed, match="workers"):
        ServerProcess("lb", "--workers", "0", "--admin-port", "-1").start()


def test_workers_share_a_socket_passed_down_by_the_launcher(kit):
    """Under the launcher (LISTEN_FDS) there is one inherited socket; every worker uses it."""

    async def main():
        echo = await kit.EchoBackend(b"E:").start()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        env = dict(os.environ, MINISYS_FDS=str(listener.fileno()), LISTEN_FDNAMES="lb")
        env["PYTHONPATH"] = str(REPO_ROOT)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "minisys.child", "lb", "--workers", str(WORKERS),
            "--admin-port", "-1", "--health", "none", "--backend", f"127.0.0.1:{echo.port}",
            env=env, pass_fds=(listener.fileno(),), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        listener.close()  # the lb holds it now
        try:
            async with asyncio.timeout(15):
                while not (line := await proc.stdout.readline()).startswith(b"READY lb "):
                    assert line, "the lb exited before READY"
            assert line.split()[2] == f"127.0.0.1:{port}".encode()
            assert {await exchange(port, b"%d" % i) for i in range(10)} == {
                b"E:%d" % i for i in range(10)
            }
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await echo.stop()

    asyncio.run(main())
