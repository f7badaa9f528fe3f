"""The whole stack, end to end: real processes, real sockets, ports chosen free.

client ─▶ lb ─▶ gateway ─▶ appserver ─▶ kvcache / minidb ─▶ mq ─▶ worker ─▶ outbox
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from minisys.testing import REPO_ROOT, pid_alive, wait_until


def order(stack, sku: str = "sku-1", qty: int = 1, user_id: int = 1):
    return stack.call(
        "POST", "/place-order", {"user_id": user_id, "items": [{"sku": sku, "qty": qty}]}
    )


def emails_per_order(outbox: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for match in re.finditer(r"^Message-ID: <order-(\d+)@", outbox, re.MULTILINE | re.IGNORECASE):
        counts[int(match.group(1))] = counts.get(int(match.group(1)), 0) + 1
    return counts


def test_orders_flow_through_every_layer(stack):
    status, product = stack.call("GET", "/products/sku-2")
    assert status == 200, product
    stock_before = product["stock"]
    n = min(12, stock_before)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: order(stack, "sku-2"), range(n)))
    assert [s for s, _ in results] == [201] * n, results
    ids = [body["id"] for _, body in results]
    assert len(set(ids)) == n
    status, product = stack.call("GET", "/products/sku-2")
    assert product["stock"] == stock_before - n
    wait_until(lambda: set(ids) <= set(emails_per_order(stack.outbox())), timeout=60,
               message="not every order's e-mail reached the outbox")  # fmt: skip
    counts = emails_per_order(stack.outbox())
    assert all(counts[i] == 1 for i in ids), counts

    done = subprocess.run(
        [sys.executable, "-m", "minisys", "status", "--data-dir", str(stack.data_dir)],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" up ") == len(stack.state()["components"]), done.stdout

    pids = [c["pid"] for c in stack.state()["components"]]
    assert stack.proc.terminate(timeout=60) == 0, stack.proc.output_tail()
    assert not [pid for pid in pids if pid_alive(pid)], "a component outlived the launcher"


def test_the_stack_heals_after_kill_9_of_each_component(stack):
    acknowledged: list[int] = []

    def place_until_ok(what: str) -> None:
        def attempt():
            status, body = order(stack, "sku-3")
            if status == 201:
                acknowledged.append(body["id"])
                return True
            return False

        wait_until(attempt, timeout=60, interval=0.2, message=f"no order succeeded after {what}")

    place_until_ok("start")
    for name in ("appserver-1", "gateway-1", "worker", "minidb", "mq"):
        victim = stack.component(name)
        stack_pid = victim["pid"]
        subprocess.run(["kill", "-9", str(stack_pid)], check=True)
        # Orders placed right after the kill may fail (minidb down → 503), but once the
        # launcher restarted the component, they succeed again.
        wait_until(lambda n=name, p=stack_pid: stack.component(n)["pid"] != p, timeout=60,
                   message=f"{name} was not restarted")  # fmt: skip
        place_until_ok(f"kill -9 {name}")
        for _ in range(3):
            status, body = order(stack, "sku-3")
            if status == 201:
                acknowledged.append(body["id"])

    for order_id in acknowledged:  # no acknowledged order is lost
        status, body = stack.call("GET", f"/orders/{order_id}")
        assert status == 200, (order_id, body)
    wait_until(lambda: set(acknowledged) <= set(emails_per_order(stack.outbox())), timeout=90,
               message="an acknowledged order never got its e-mail")  # fmt: skip
    counts = emails_per_order(stack.outbox())
    assert all(counts[i] == 1 for i in acknowledged), counts
    assert stack.proc.terminate(timeout=60) == 0


def test_sigint_stops_everything_in_order(stack):
    pids = [c["pid"] for c in stack.state()["components"]]
    stack.proc.signal(signal.SIGINT)
    assert stack.proc.proc.wait(60) == 0
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not (stack.data_dir / "minisys.json").exists()


def test_a_second_run_reuses_the_data_dir(tmp_path, start_stacks):
    """Stop the stack, start it again on the same data dir: orders, stock and mail remain."""
    data_dir = tmp_path / "data"
    first = start_stacks(data_dir)
    status, body = order(first, "sku-4", qty=2)
    assert status == 201, body
    order_id = body["id"]
    _, product = first.call("GET", "/products/sku-4")
    wait_until(lambda: order_id in emails_per_order(first.outbox()), timeout=60)
    assert first.proc.terminate(timeout=60) == 0

    second = start_stacks(data_dir)
    status, body = second.call("GET", f"/orders/{order_id}")
    assert status == 200 and body["id"] == order_id, body
    # The launcher seeds on every start; seeding must not reset the stock.
    _, again = second.call("GET", "/products/sku-4")
    assert again["stock"] == product["stock"]
    assert emails_per_order(second.outbox()) == {order_id: 1}
    assert second.proc.terminate(timeout=60) == 0
