"""The seed's flow end to end, on real processes: kvcache, minidb, mq, appserver, worker.

Every test here goes through sockets: HTTP into `python -m appserver`, RESP and beanstalkd
out of it, the worker's mbox at the end. The `stack` fixture is parametrized: "ours" runs on
kvcache + minidb + mq, "real" (marked interop) on redis-server + beanstalkd, which shows the
appserver speaks the real protocols. The outage tests kill stores, so they run on ours only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mailbox
import signal
import uuid
from pathlib import Path

import pytest

from minisys.beanstalk.client import BeanstalkClient
from minisys.http.client import HttpClient
from minisys.resp.client import RespClient
from minisys.testing import ServerProcess, wait_until

pytestmark = pytest.mark.slow

# Generous: a shared 2-core CI machine may be slow; the waits return as soon as they can.
EVENTUALLY = 30.0


class Stack:
    """Stores plus one appserver and one (replaceable) worker."""

    def __init__(self, tmp: Path, cache: str, db: str, queue: str, *app_args: str) -> None:
        self.tmp = tmp
        self.cache, self.db, self.queue = cache, db, queue
        self.mbox = tmp / "outbox.mbox"
        self.app = ServerProcess(
            "appserver", "--cache", cache, "--db", db, "--queue", queue, "--seed", *app_args
        ).start()
        self.worker: ServerProcess | None = None

    def start_worker(self, *args: str) -> ServerProcess:
        self.worker = ServerProcess(
            "appserver.worker",
            "--queue",
            self.queue,
            "--outbox",
            str(self.mbox),
            *args,
            port_flag=False,
            ready=("worker",),
        ).start()
        # The READY line names what the worker consumes (it listens on no port).
        watched = "emails@" + self.queue.removeprefix("beanstalk://").rstrip("/")
        assert f"READY worker {watched}" in self.worker.output_tail()
        return self.worker

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.app.port}{path}"

    def request(self, method: str, path: str, body: object = None, headers=()) -> tuple:
        return asyncio.run(self.requests([(method, path, body, headers)]))[0]

    async def requests(self, calls: list[tuple]) -> list[tuple[int, dict, object]]:
        """Send all `calls` concurrently; (status, headers, parsed JSON) for each."""
        client = HttpClient(pool_size_per_origin=64)

        async def one(method, path, body, headers):
            raw = (
                body
                if isinstance(body, bytes)
                else b""
                if body is None
                else json.dumps(body).encode()
            )
            response = await client.request(method, self.url(path), list(headers), raw)
            doc = json.loads(response.body) if response.body else None
            return response.status, response.headers, doc

        try:
            return await asyncio.gather(*(one(*call) for call in calls))
        finally:
            await client.close()

    def message_ids(self) -> list[str]:
        if not self.mbox.exists():
            return []
        return [m["Message-ID"] for m in mailbox.mbox(str(self.mbox))]

    def close(self) -> None:
        for proc in (self.worker, self.app):
            if proc is not None:
                proc.kill()


def eventually(stack: Stack, predicate, what: str, timeout: float = EVENTUALLY) -> None:
    """wait_until, failing with the worker's and the appserver's last log lines."""
    try:
        wait_until(predicate, timeout=timeout)
    except TimeoutError:
        worker = stack.worker.output_tail()[-3000:] if stack.worker else "(none)"
        raise AssertionError(
            f"{what} within {timeout}s\n--- worker:\n{worker}\n"
            f"--- appserver:\n{stack.app.output_tail()[-3000:]}\n"
            f"--- queue:\n{asyncio.run(queue_stats(stack.queue))}"
        ) from None


async def queue_stats(url: str) -> object:
    client = await BeanstalkClient.from_url(url)
    try:
        stats = await client.stats_tube("emails")
        jobs = [await client.stats_job(n) for n in range(1, int(stats["total-jobs"]) + 3)]
        return stats, jobs
    finally:
        await client.close()


def new_product(stack: Stack, stock: int) -> str:
    sku = f"t-{uuid.uuid4().hex[:12]}"
    status, _, _ = stack.request(
        "POST", "/products", {"sku": sku, "name": "Test item", "price": 250, "stock": stock}
    )
    assert status == 201
    return sku


def order_body(sku: str, qty: int = 1, user_id: int = 1) -> dict:
    return {"user_id": user_id, "items": [{"sku": sku, "qty": qty}]}


def mid(order_id: int) -> str:
    return f"<order-{order_id}@minisys.local>"


async def redis_call(url: str, *args):
    client = await RespClient.from_url(url)
    try:
        return await client.execute(*args)
    finally:
        await client.close()


@pytest.fixture(scope="module", params=["ours", pytest.param("real", marks=pytest.mark.interop)])
def stack(request, tmp_path_factory, real_servers):
    tmp = tmp_path_factory.mktemp(f"flow-{request.param}")
    with contextlib.ExitStack() as running:
        if request.param == "ours":
            pytest.importorskip("mq", reason="mq (python -m mq) is not built yet")
            kv = running.enter_context(ServerProcess("kvcache"))
            db = running.enter_context(ServerProcess("minidb", "--data-dir", str(tmp / "db")))
            mq = running.enter_context(ServerProcess("mq", "--data-dir", str(tmp / "mq")))
            cache_port, db_port, queue_port = kv.port, db.port, mq.port
            db_url = f"redis://127.0.0.1:{db_port}"
        else:
            redis, beanstalkd = real_servers
            cache_port = db_port = running.enter_context(redis()).port
            queue_port = running.enter_context(beanstalkd()).port
            db_url = f"redis://127.0.0.1:{db_port}/1"
        stack = Stack(
            tmp,
            f"redis://127.0.0.1:{cache_port}",
            db_url,
            f"beanstalk://127.0.0.1:{queue_port}",
            "--job-ttr",
            "2",
        )
        stack.kind = request.param
        running.callback(stack.close)
        stack.start_worker("--concurrency", "2")
        yield stack


def ours_only(stack: Stack) -> None:
    if stack.kind != "ours":
        pytest.skip("outage tests kill stores: they run once, on ours")


def test_concurrent_orders_for_the_last_items_never_oversell(stack):
    sku = new_product(stack, stock=5)
    results = asyncio.run(
        stack.requests(
            [("POST", "/place-order", order_body(sku, user_id=1 + n % 3), ()) for n in range(25)]
        )
    )
    accepted = [doc["id"] for status, _, doc in results if status == 201]
    refused = [doc for status, _, doc in results if status != 201]
    assert len(accepted) == 5
    assert all(doc["status"] == 409 and doc["type"].endswith("out-of-stock") for doc in refused)
    assert stack.request("GET", f"/products/{sku}")[2]["stock"] == 0
    wanted = {mid(i) for i in accepted}
    wait_until(
        lambda: wanted <= set(stack.message_ids()),
        timeout=EVENTUALLY,
        message="not every accepted order got its e-mail",
    )
    ids = stack.message_ids()
    assert len(ids) == len(set(ids)), "an e-mail was sent twice"
    mentioning = [m["Message-ID"] for m in mailbox.mbox(str(stack.mbox)) if sku in m.get_payload()]
    assert sorted(mentioning) == sorted(wanted), "a refused order got an e-mail"


def test_idempotent_retries_over_real_stores_place_one_order(stack):
    sku = new_product(stack, stock=10)
    key = [("Idempotency-Key", uuid.uuid4().hex)]
    results = asyncio.run(
        stack.requests([("POST", "/place-order", order_body(sku, 2), key) for _ in range(8)])
    )
    assert {status for status, _, _ in results} == {201}
    assert len({doc["id"] for _, _, doc in results}) == 1
    assert stack.request("GET", f"/products/{sku}")[2]["stock"] == 8
    status, _, doc = stack.request("POST", "/place-order", order_body(sku, 3), key)
    assert status == 422 and doc["type"].endswith("idempotency-mismatch")


def test_cache_aside_fills_with_ttls_and_orders_invalidate_the_stock(stack):
    sku = new_product(stack, stock=3)
    status, headers, _ = stack.request("GET", f"/products/{sku}")
    assert status == 200 and headers["X-Cache"] == "MISS"
    assert stack.request("GET", f"/products/{sku}")[1]["X-Cache"] == "HIT"
    # The fill set each key's TTL on the cache server itself (PX), product 300 s, stock 10 s.
    product_ttl = asyncio.run(redis_call(stack.cache, "PTTL", f"product:{sku}"))
    stock_ttl = asyncio.run(redis_call(stack.cache, "PTTL", f"stock:{sku}"))
    assert 290_000 < product_ttl <= 300_000 and 0 < stock_ttl <= 10_000
    assert stack.request("GET", "/users/2")[0] == 200
    assert 290_000 < asyncio.run(redis_call(stack.cache, "PTTL", "user:2")) <= 300_000
    assert stack.request("POST", "/place-order", order_body(sku))[0] == 201
    assert asyncio.run(redis_call(stack.cache, "EXISTS", f"stock:{sku}")) == 0
    assert stack.request("GET", f"/products/{sku}")[2]["stock"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_id": 1},
        {"user_id": "one", "items": [{"sku": "sku-1", "qty": 1}]},
        {"user_id": 1, "items": [{"sku": "sku-1", "qty": -3}]},
        {"user_id": 1, "items": [{"sku": "no-such-sku", "qty": 1}]},
        b"{oops",
        b"x" * (2 * 1024 * 1024),
    ],
    ids=["empty", "no-items", "wrong-type", "negative-qty", "unknown-sku", "not-json", "huge"],
)
def test_bad_input_is_4xx_problem_json_and_writes_nothing(stack, body):
    before = asyncio.run(redis_call(stack.db, "GET", "seq:order"))
    status, headers, doc = stack.request("POST", "/place-order", body)
    assert 400 <= status < 500
    assert headers["Content-Type"] == "application/problem+json"
    assert doc["status"] == status
    assert asyncio.run(redis_call(stack.db, "GET", "seq:order")) == before


def test_a_worker_killed_mid_job_does_not_lose_or_repeat_the_email(stack):
    sku = new_product(stack, stock=3)
    assert stack.worker.terminate() == 0  # SIGTERM: a clean, prompt exit
    slow = stack.start_worker("--stall", "60")
    status, _, order = stack.request("POST", "/place-order", order_body(sku))
    assert status == 201
    wait_until(lambda: "stalling" in slow.output_tail(), timeout=EVENTUALLY)
    slow.kill()  # mid-job: reserved, not yet sent
    assert mid(order["id"]) not in stack.message_ids()
    stack.start_worker("--concurrency", "2")
    wait_until(lambda: mid(order["id"]) in stack.message_ids(), timeout=EVENTUALLY)
    assert stack.message_ids().count(mid(order["id"])) == 1


def test_a_frozen_worker_loses_its_job_after_ttr_and_the_email_is_sent_once(stack, request):
    if stack.kind == "real":
        # Observed here about one run in four: beanstalkd 1.12 keeps the frozen connection's
        # job "reserved" with time-left -28 and timeouts 0 — it never re-checks the TTR of
        # a silent connection (cf. beanstalkd issues #380, #262 and PR #174). mq does.
        request.node.add_marker(
            pytest.mark.xfail(
                reason="beanstalkd 1.12 does not always expire the TTR of a silent connection",
                strict=False,
            )
        )
    sku = new_product(stack, stock=3)
    stack.worker.terminate()
    frozen = stack.start_worker("--stall", "60")
    status, _, order = stack.request("POST", "/place-order", order_body(sku))
    assert status == 201
    wait_until(lambda: "stalling" in frozen.output_tail(), timeout=EVENTUALLY)
    frozen.signal(signal.SIGSTOP)  # alive but silent: no touch, so the 2 s TTR runs out
    try:
        stack.start_worker()
        # TTR 2 s: a working mq redelivers within seconds (10 s bounds the xfail's cost)
        wait = EVENTUALLY if stack.kind == "ours" else 10
        eventually(stack, lambda: mid(order["id"]) in stack.message_ids(), "no e-mail", wait)
    finally:
        frozen.kill()
    assert stack.message_ids().count(mid(order["id"])) == 1
    # (A frozen worker that wakes up and sends late is refused by the mbox: see
    # test_two_processes_sharing_the_mbox_dedupe_through_the_file.)


def test_sigterm_stops_the_appserver_cleanly(stack):
    ours_only(stack)
    with ServerProcess(
        "appserver", "--cache", stack.cache, "--db", stack.db, "--queue", stack.queue
    ) as app:
        side = f"http://127.0.0.1:{app.port}"
        status, _, _ = stack.request("GET", "/healthz")
        assert status == 200
        assert asyncio.run(_get(side + "/readyz")) == 200
        assert app.terminate() == 0
        assert "appserver stopped" in app.output_tail()


async def _get(url: str) -> int:
    client = HttpClient()
    try:
        return (await client.request("GET", url)).status
    finally:
        await client.close()


def test_cache_down_orders_still_succeed(stack):
    ours_only(stack)
    with ServerProcess("kvcache") as kv:
        side = Stack(stack.tmp, f"redis://127.0.0.1:{kv.port}", stack.db, stack.queue)
        try:
            sku = new_product(side, stock=4)
            assert side.request("GET", f"/products/{sku}")[0] == 200  # fills the cache
            kv.kill()
            results = [side.request("POST", "/place-order", order_body(sku)) for _ in range(3)]
            assert [status for status, _, _ in results] == [201, 201, 201]
            assert side.request("GET", f"/products/{sku}")[2]["stock"] == 1
            status, _, ready = side.request("GET", "/readyz")
            assert status == 200 and ready["status"] == "degraded" and ready["cache"] == "down"
        finally:
            side.close()
    wanted = {mid(doc["id"]) for _, _, doc in results}
    eventually(stack, lambda: wanted <= set(stack.message_ids()), "e-mails missing")


def test_db_down_is_503_problem_and_recovers(stack):
    ours_only(stack)
    with ServerProcess("minidb", "--data-dir", str(stack.tmp / "doomed-db")) as db:
        side = Stack(stack.tmp, stack.cache, f"redis://127.0.0.1:{db.port}", stack.queue)
        try:
            assert side.request("GET", "/readyz")[0] == 200
            db.kill()
            status, headers, doc = side.request("POST", "/place-order", order_body("sku-1"))
            assert status == 503 and headers["Retry-After"] == "1"
            assert headers["Content-Type"] == "application/problem+json"
            assert doc["type"].endswith("store-unavailable") and doc["store"] == "db"
            assert side.request("GET", "/readyz")[0] == 503
            # The db comes back on the same port: the next requests simply work again.
            with ServerProcess(
                "minidb",
                "--port",
                str(db.port),
                "--data-dir",
                str(stack.tmp / "doomed-db"),
                port_flag=False,
            ):
                assert side.request("GET", "/readyz")[0] == 200
                assert side.request("POST", "/place-order", order_body("sku-1"))[0] == 201
        finally:
            side.close()


def test_queue_down_keeps_the_order_and_sends_the_email_later(stack, tmp_path):
    ours_only(stack)
    with (
        ServerProcess("minidb", "--data-dir", str(tmp_path / "minidb")) as db,
        ServerProcess("mq", "--data-dir", str(tmp_path / "mq")) as mq,
    ):
        queue_port = mq.port
        side = Stack(
            tmp_path,
            "memory://",
            f"redis://127.0.0.1:{db.port}",
            f"beanstalk://127.0.0.1:{queue_port}",
            "--outbox-interval",
            "0.1",
            "--outbox-min-age",
            "0.2",
        )
        try:
            side.start_worker()
            mq.kill()
            status, _, order = side.request("POST", "/place-order", order_body("sku-3", 2))
            assert status == 201
            outbox = asyncio.run(redis_call(side.db, "GET", f"outbox:{order['id']}"))
            assert json.loads(outbox)["order_id"] == order["id"]
            assert side.request("GET", "/readyz")[2]["queue"] == "down"
            assert side.request("GET", "/products/sku-3")[2]["stock"] == 18
            with ServerProcess(
                "mq", "--port", str(queue_port), "--data-dir", str(tmp_path / "mq"), port_flag=False
            ):
                wait_until(lambda: mid(order["id"]) in side.message_ids(), timeout=EVENTUALLY)
                assert side.message_ids().count(mid(order["id"])) == 1
                assert asyncio.run(redis_call(side.db, "EXISTS", f"outbox:{order['id']}")) == 0
        finally:
            side.close()
