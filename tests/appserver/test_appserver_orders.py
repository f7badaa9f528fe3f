"""The place-order rules, on in-memory stores: stock, atomicity, idempotency, outages."""

from __future__ import annotations

import asyncio
import json

import pytest

from appserver.keyed_locks import KeyedLocks
from appserver.orders import Placed
from appserver.problems import ProblemError
from appserver.shop import Shop, build_shop
from appserver.stores import StoreUnavailable
from appserver.validation import Item, OrderRequest


def order(user_id: int = 1, **items: int) -> OrderRequest:
    return OrderRequest(
        user_id, tuple(Item(s.replace("_", "-"), q) for s, q in sorted(items.items()))
    )


def db_stock(shop: Shop, sku: str) -> int:
    return int(shop.stores.db.data[f"stock:{sku}"])


def jobs(shop: Shop) -> list[dict]:
    return [json.loads(b) for b in shop.stores.queue.bodies("emails")]


def writes_of(shop: Shop) -> dict[str, bytes]:
    """The db's content apart from the order-id counter (which a refusal may bump)."""
    return {k: v for k, v in shop.stores.db.data.items() if k != "seq:order"}


def test_an_order_decrements_stock_and_queues_one_email(shop, run):
    placed = run(shop.orders.place(order(sku_1=2, sku_5=1), request_id="req-abc"))
    assert isinstance(placed, Placed) and not placed.replayed
    o = placed.order
    assert o["user_id"] == 1 and o["status"] == "placed"
    assert [(i["sku"], i["qty"]) for i in o["items"]] == [("sku-1", 2), ("sku-5", 1)]
    assert o["total"] == 2 * 1999 + 4500
    assert db_stock(shop, "sku-1") == 98 and db_stock(shop, "sku-5") == 4
    assert json.loads(shop.stores.db.data[f"order:{o['id']}"]) == o
    (job,) = jobs(shop)
    assert job["order_id"] == o["id"] and job["request_id"] == "req-abc"
    assert job["to"] == "ada@example.com" and job["total"] == o["total"]


def outbox_keys(shop: Shop) -> list[str]:
    return sorted(k for k in shop.stores.db.data if k.startswith("outbox:"))


def test_published_outbox_entries_are_deleted_by_the_next_transaction(shop, run):
    first = run(shop.orders.place(order(sku_1=1))).order["id"]
    assert outbox_keys(shop) == [f"outbox:{first}"]  # on mq already; its DEL waits for a ride
    second = run(shop.orders.place(order(sku_2=1))).order["id"]
    assert outbox_keys(shop) == [f"outbox:{second}"]  # rode along in the second EXEC
    run(shop.outbox.flush())  # what the drainer does each pass
    assert outbox_keys(shop) == [] and len(jobs(shop)) == 2


def test_order_ids_come_in_blocks(shop, run):
    ids = [run(shop.orders.place(order(sku_1=1))).order["id"] for _ in range(3)]
    assert ids == [1, 2, 3] and shop.stores.db.data["seq:order"] == b"100"


def test_the_cached_stock_is_invalidated_after_an_order(shop, run):
    assert run(shop.products.get("sku-4"))[0]["stock"] == 10
    assert "stock:sku-4" in shop.stores.cache.data
    run(shop.orders.place(order(sku_4=3)))
    assert "stock:sku-4" not in shop.stores.cache.data
    assert run(shop.products.get("sku-4"))[0]["stock"] == 7


def test_out_of_stock_is_409_and_writes_nothing(shop, run):
    before = writes_of(shop)
    with pytest.raises(ProblemError) as refused:
        run(shop.orders.place(order(sku_1=1, sku_5=6)))
    assert refused.value.status == 409
    assert refused.value.extra["unavailable"] == [{"sku": "sku-5", "requested": 6, "available": 5}]
    assert writes_of(shop) == before
    assert jobs(shop) == []


def test_exactly_the_stock_is_sold_to_concurrent_buyers(shop, run, clock):
    # Two appservers on one db: each queues its own orders per product (keyed_locks.py),
    # so only WATCH stands between them, and it must refuse the loser's EXEC.
    other = build_shop(shop.stores, clock=clock, monotonic=clock)

    async def buy_all():
        return await asyncio.gather(
            *(
                (shop if n % 2 else other).orders.place(order(user_id=1 + n % 3, sku_5=1))
                for n in range(20)
            ),
            return_exceptions=True,
        )

    results = run(buy_all())
    placed = [r for r in results if isinstance(r, Placed)]
    refused = [r for r in results if isinstance(r, ProblemError)]
    assert len(placed) == 5 and len(refused) == 15
    assert all(r.status == 409 for r in refused)
    assert db_stock(shop, "sku-5") == 0
    assert sorted(j["order_id"] for j in jobs(shop)) == sorted(p.order["id"] for p in placed)
    conflicts = [s.registry.get("appserver_order_conflicts_total").value() for s in (shop, other)]
    assert sum(conflicts) > 0


def test_one_process_queues_its_orders_for_a_product_instead_of_conflicting(shop, run):
    async def buy_all():
        return await asyncio.gather(
            *(shop.orders.place(order(sku_1=1, sku_2=1)) for _ in range(10)),
            *(shop.orders.place(order(sku_2=1, sku_3=1)) for _ in range(10)),
        )

    assert len(run(buy_all())) == 20
    assert shop.registry.get("appserver_order_conflicts_total").value() == 0
    assert db_stock(shop, "sku-2") == 30 and len(shop.orders.queue) == 0


def test_a_conflicting_write_makes_the_transaction_retry(shop, run):
    db = shop.stores.db

    def someone_else_buys():
        db.data["stock:sku-3"] = b"19"
        db.versions["stock:sku-3"] = 10**9

    db.before_exec = someone_else_buys
    run(shop.orders.place(order(sku_3=4)))
    assert db_stock(shop, "sku-3") == 15
    assert shop.registry.get("appserver_order_conflicts_total").value() == 1


def test_a_stale_cache_cannot_oversell(shop, run):
    run(shop.products.get("sku-5"))  # cache says 5
    shop.stores.db.data["stock:sku-5"] = b"1"  # a write the cache never heard of
    with pytest.raises(ProblemError) as refused:
        run(shop.orders.place(order(sku_5=3)))
    assert refused.value.status == 409 and db_stock(shop, "sku-5") == 1
    assert "stock:sku-5" not in shop.stores.cache.data  # dropped: the db contradicted it


def test_stock_the_cache_lacks_is_read_once_under_watch_and_filled(shop, run):
    db, cache = shop.stores.db, shop.stores.cache
    read = []
    real_mget = db.mget

    async def mget(keys):
        read.extend(keys)
        return await real_mget(keys)

    db.mget = mget
    run(shop.orders.place(order(sku_2=1)))  # user and product missed: read, then filled
    assert "user:1" in read and "product:sku-2" in read
    assert read.count("stock:sku-2") == 1  # by the WATCH read alone (memory.py's watch)
    # A hopeless order on stock the cache lacks: refused under WATCH, and the db's figure
    # fills the cache, so the next hopeless order is refused without the db.
    assert "stock:sku-5" not in cache.data
    with pytest.raises(ProblemError) as refused:
        run(shop.orders.place(order(sku_5=6)))
    assert refused.value.status == 409 and cache.data["stock:sku-5"][0] == b"5"
    db.down = True
    with pytest.raises(ProblemError) as refused:
        run(shop.orders.place(order(sku_5=6)))
    assert refused.value.status == 409


def test_unknown_user_and_unknown_sku_are_422(shop, run):
    before = writes_of(shop)
    for request in (order(user_id=99, sku_1=1), OrderRequest(1, (Item("nope", 1),))):
        with pytest.raises(ProblemError) as refused:
            run(shop.orders.place(request))
        assert refused.value.status == 422
    assert writes_of(shop) == before and jobs(shop) == []


def test_same_idempotency_key_and_body_returns_the_same_order(shop, run):
    first = run(shop.orders.place(order(sku_2=2), idempotency_key="k1"))
    again = run(shop.orders.place(order(sku_2=2), idempotency_key="k1"))
    assert again.replayed and again.order == first.order
    assert db_stock(shop, "sku-2") == 48 and len(jobs(shop)) == 1


def test_same_idempotency_key_with_another_body_is_422(shop, run):
    run(shop.orders.place(order(sku_2=2), idempotency_key="k1"))
    with pytest.raises(ProblemError) as refused:
        run(shop.orders.place(order(sku_2=3), idempotency_key="k1"))
    assert refused.value.status == 422
    assert refused.value.type.endswith("idempotency-mismatch")
    assert db_stock(shop, "sku-2") == 48


def test_idempotency_keys_are_per_consumer(shop, run):
    a = run(shop.orders.place(order(sku_2=1), idempotency_key="k", consumer="alice"))
    b = run(shop.orders.place(order(sku_2=1), idempotency_key="k", consumer="bob"))
    assert a.order["id"] != b.order["id"] and db_stock(shop, "sku-2") == 48


def test_concurrent_retries_with_one_key_place_one_order(shop, run):
    async def retry_storm():
        return await asyncio.gather(
            *(shop.orders.place(order(sku_1=1), idempotency_key="same") for _ in range(10))
        )

    results = run(retry_storm())
    assert len({r.order["id"] for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert db_stock(shop, "sku-1") == 99 and len(jobs(shop)) == 1


def test_cache_down_orders_still_succeed(shop, run):
    shop.stores.cache.down = True
    placed = run(shop.orders.place(order(sku_1=1)))
    assert placed.order["id"] and db_stock(shop, "sku-1") == 99
    assert shop.cache.degraded
    assert run(shop.products.get("sku-1"))[0]["stock"] == 99


def test_cache_is_used_again_after_the_cooldown(shop, run, clock):
    shop.stores.cache.down = True
    run(shop.products.get("sku-1"))
    shop.stores.cache.down = False
    calls = shop.stores.cache.calls
    run(shop.products.get("sku-1"))
    assert shop.stores.cache.calls == calls  # still cooling down: the cache is skipped
    clock.advance(5)
    run(shop.products.get("sku-1"))
    assert shop.stores.cache.calls > calls and not shop.cache.degraded


def test_db_down_raises_store_unavailable(shop, run):
    shop.stores.db.down = True
    with pytest.raises(StoreUnavailable):
        run(shop.orders.place(order(sku_1=1)))


def test_queue_down_keeps_the_job_in_the_outbox_until_drained(shop, run, clock):
    shop.stores.queue.down = True
    first = run(shop.orders.place(order(sku_1=1), request_id="r-1")).order["id"]
    assert db_stock(shop, "sku-1") == 99 and jobs(shop) == []
    calls = shop.stores.queue.calls
    second = run(shop.orders.place(order(sku_1=1), request_id="r-2")).order["id"]
    assert shop.stores.queue.calls == calls  # cooling down: mq is not even tried
    assert outbox_keys(shop) == [f"outbox:{first}", f"outbox:{second}"]
    assert run(shop.outbox.drain_once()) == 0  # mq still down: nothing lost, nothing sent
    shop.stores.queue.down = False
    assert run(shop.outbox.drain_once()) == 0  # too young: their requests may still publish
    clock.advance(10)
    assert run(shop.outbox.drain_once()) == 2
    assert [(j["order_id"], j["request_id"]) for j in jobs(shop)] == [
        (first, "r-1"),
        (second, "r-2"),
    ]
    assert all("queued_at" not in j for j in jobs(shop)) and outbox_keys(shop) == []
    assert run(shop.outbox.drain_once()) == 0 and len(jobs(shop)) == 2


def test_a_users_orders_are_listed_in_order(shop, run):
    ids = [run(shop.orders.place(order(user_id=2, sku_1=1))).order["id"] for _ in range(3)]
    run(shop.orders.place(order(user_id=1, sku_1=1)))
    assert [o["id"] for o in run(shop.orders.of_user(2))] == ids
    assert run(shop.orders.of_user(3)) == []
    with pytest.raises(ProblemError) as missing:
        run(shop.orders.of_user(42))
    assert missing.value.status == 404


def test_get_order(shop, run):
    placed = run(shop.orders.place(order(sku_1=1)))
    assert run(shop.orders.get(placed.order["id"])) == placed.order
    with pytest.raises(ProblemError):
        run(shop.orders.get(12345))


def test_a_turn_passes_on_when_released_before_the_block_ends(run):
    """`KeyedLocks.hold` yields `release`: the order flow hands the next order of the same
    products its turn once its EXEC is sent; the block's end releases nothing twice."""

    async def main():
        locks = KeyedLocks()
        events = []

        async def first():
            async with locks.hold(["stock:a", "stock:b"]) as release:
                events.append("first holds")
                await asyncio.sleep(0)
                release()
                release()  # idempotent
                await asyncio.sleep(0.01)  # still in the block: the EXEC's reply pending
                events.append("first done")

        async def second():
            await asyncio.sleep(0)
            async with locks.hold(["stock:b"]):
                events.append("second holds")

        await asyncio.gather(first(), second())
        assert events == ["first holds", "second holds", "first done"]
        assert len(locks) == 0

    run(main())
