"""The shop assembled: stores in, services out (no HTTP here).

One place wires the pieces together, so the HTTP routes (`app.py`), the tests and the
bench all get the same shop:

    Stores(cache, db, queue) ─▶ GuardedCache(cache)
                               Users(db, cache)   Products(db, cache)
                               Outbox(db, queue)
                               Orders(db, cache, users, outbox)

Read next: `app.py` (the routes on top), `orders.py` (the heart of it).

Simpler than the real thing: no dependency-injection framework; a constructor is enough.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from appserver.cache_aside import GuardedCache
from appserver.orders import Orders
from appserver.outbox import DEFAULT_JOB_TTR, Outbox
from appserver.products import Products
from appserver.stores import Stores
from appserver.users import Users
from minisys.metrics import Registry


@dataclass
class Shop:
    stores: Stores
    registry: Registry
    cache: GuardedCache
    users: Users
    products: Products
    outbox: Outbox
    orders: Orders


def build_shop(
    stores: Stores,
    *,
    registry: Registry | None = None,
    job_ttr: int = DEFAULT_JOB_TTR,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> Shop:
    """Wire the services on top of `stores`; `clock`/`monotonic` let tests control time."""
    registry = registry or Registry()
    cache = GuardedCache(stores.cache, registry=registry, clock=monotonic)
    users = Users(stores.db, cache)
    products = Products(stores.db, cache)
    outbox = Outbox(stores.db, stores.queue, registry=registry, ttr=job_ttr, clock=clock)
    orders = Orders(stores.db, cache, users, outbox, registry=registry, clock=clock)
    return Shop(stores, registry, cache, users, products, outbox, orders)
