"""A stateful property: any sequence of orders, retries and restocks keeps the books right.

Hypothesis drives the shop (on in-memory stores) with random orders — some concurrent,
some retried with the same Idempotency-Key, some for more than is left — and restocks,
and after every step checks the shop against a plain model:

    stock in the db = the model's stock (never negative, never oversold)
    one e-mail job per placed order, none for refused ones
    a replayed key returns the very order it placed
"""

from __future__ import annotations

import asyncio
import json

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from appserver.memory import MemoryCache, MemoryDb, MemoryQueue
from appserver.orders import Placed
from appserver.problems import ProblemError
from appserver.seed import PRODUCTS, seed
from appserver.shop import build_shop
from appserver.stores import Stores
from appserver.validation import Item, OrderRequest

SKUS = [p["sku"] for p in PRODUCTS]

carts = st.dictionaries(st.sampled_from(SKUS), st.integers(1, 8), min_size=1, max_size=3)


def request(user_id: int, cart: dict[str, int]) -> OrderRequest:
    return OrderRequest(user_id, tuple(Item(s, q) for s, q in sorted(cart.items())))


class Shopping(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        now = [1000.0]
        self.stores = Stores(MemoryCache(clock=lambda: now[0]), MemoryDb(), MemoryQueue())
        self.shop = build_shop(self.stores, clock=lambda: now[0], monotonic=lambda: now[0])
        asyncio.run(seed(self.stores.db))
        self.stock = {p["sku"]: p["stock"] for p in PRODUCTS}
        self.placed: dict[int, dict[str, int]] = {}
        self.keys: dict[str, tuple[OrderRequest, int]] = {}

    def _apply(self, cart: dict[str, int], result: object) -> None:
        fits = all(self.stock[s] >= q for s, q in cart.items())
        if isinstance(result, Placed):
            assert fits, f"placed {cart} with only {self.stock}"
            for sku, qty in cart.items():
                self.stock[sku] -= qty
            self.placed[result.order["id"]] = cart
        else:
            assert isinstance(result, ProblemError) and result.status == 409
            assert not fits, f"refused {cart} although {self.stock} has enough"

    @rule(user=st.integers(1, 3), cart=carts)
    def order(self, user, cart):
        try:
            result = asyncio.run(self.shop.orders.place(request(user, cart)))
        except ProblemError as exc:
            result = exc
        self._apply(cart, result)

    @rule(burst=st.lists(carts, min_size=2, max_size=6))
    def concurrent_orders(self, burst):
        async def all_at_once():
            return await asyncio.gather(
                *(self.shop.orders.place(request(1, cart)) for cart in burst),
                return_exceptions=True,
            )

        results = asyncio.run(all_at_once())
        placed = [cart for cart, r in zip(burst, results, strict=True) if isinstance(r, Placed)]
        assert all(isinstance(r, Placed | ProblemError) for r in results), results
        for cart, result in zip(burst, results, strict=True):
            if isinstance(result, Placed):
                for sku, qty in cart.items():
                    self.stock[sku] -= qty
                self.placed[result.order["id"]] = cart
        assert all(v >= 0 for v in self.stock.values()), (placed, self.stock)

    @rule(key=st.sampled_from(["a", "b", "c"]), cart=carts)
    def keyed_order(self, key, cart):
        req = request(2, cart)
        try:
            result = asyncio.run(self.shop.orders.place(req, idempotency_key=key))
        except ProblemError as exc:
            result = exc
        if key in self.keys and self.keys[key][0] != req:
            assert isinstance(result, ProblemError) and result.status == 422
        elif key in self.keys:
            assert isinstance(result, Placed) and result.replayed
            assert result.order["id"] == self.keys[key][1]
        else:
            self._apply(cart, result)
            if isinstance(result, Placed):
                self.keys[key] = (req, result.order["id"])

    @rule(sku=st.sampled_from(SKUS), stock=st.integers(0, 30))
    def restock(self, sku, stock):
        asyncio.run(self.shop.products.set_stock(sku, stock))
        self.stock[sku] = stock

    @invariant()
    def books_balance(self):
        db = self.stores.db.data
        assert {s: int(db[f"stock:{s}"]) for s in SKUS} == self.stock
        jobs = [json.loads(b)["order_id"] for b in self.stores.queue.bodies("emails")]
        assert sorted(jobs) == sorted(self.placed)


Shopping.TestCase.settings = settings(max_examples=20, stateful_step_count=20)
test_shopping_keeps_the_books = Shopping.TestCase
