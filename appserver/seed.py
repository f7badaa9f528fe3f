"""Demo data: three users and five products, so the stack has something to sell.

The launcher runs `python -m appserver.seed --db redis://…:6381 --cache redis://…:6380`
once the stores are up (tests call `seed(db)` directly). Seeding is idempotent and never
clobbers: each key is written only if it is absent (`SET … NX`), so restarting the stack
keeps the orders and stock of the last run, and running it against a shop in use changes
nothing.

    users      1 Ada Lovelace, 2 Grace Hopper, 3 Edsger Dijkstra
    products   sku-1 … sku-5, prices in cents, stock 5 to 100

Read next: `users.py`, `products.py` for the key layout.

Simpler than the real thing: no migrations, no fixtures format; a list in the code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from appserver.products import product_key, stock_key
from appserver.stores import Db, StoreUnavailable, open_stores
from appserver.users import user_key

USERS = [
    {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com"},
    {"id": 2, "name": "Grace Hopper", "email": "grace@example.com"},
    {"id": 3, "name": "Edsger Dijkstra", "email": "edsger@example.com"},
]
PRODUCTS = [
    {"sku": "sku-1", "name": "Teapot", "price": 1999, "stock": 100},
    {"sku": "sku-2", "name": "Espresso cup", "price": 650, "stock": 50},
    {"sku": "sku-3", "name": "Milk jug", "price": 1200, "stock": 20},
    {"sku": "sku-4", "name": "Grinder", "price": 8900, "stock": 10},
    {"sku": "sku-5", "name": "Kettle (last ones)", "price": 4500, "stock": 5},
]


async def seed(db: Db) -> int:
    """Write the demo data where absent; return how many keys were written."""
    written = 0
    for user in USERS:
        written += await db.set(
            user_key(user["id"]), json.dumps(user).encode(), only_if_absent=True
        )
    for product in PRODUCTS:
        info = {k: product[k] for k in ("sku", "name", "price")}
        written += await db.set(
            product_key(product["sku"]), json.dumps(info).encode(), only_if_absent=True
        )
        written += await db.set(
            stock_key(product["sku"]), str(product["stock"]).encode(), only_if_absent=True
        )
    # New users must get ids after the seeded ones.
    if await db.set("seq:user", str(len(USERS)).encode(), only_if_absent=True):
        written += 1
    else:
        current = int(await db.get("seq:user") or 0)
        if current < len(USERS):
            await db.incr("seq:user", len(USERS) - current)
    return written


def seeded_keys() -> list[str]:
    """Every key `seed` may write (what a cache in front of the db must forget)."""
    keys = [user_key(user["id"]) for user in USERS]
    for product in PRODUCTS:
        keys += [product_key(product["sku"]), stock_key(product["sku"])]
    return keys


async def _main(db_url: str, cache_url: str) -> int:
    stores = open_stores(cache_url, db_url, "memory://")
    try:
        written = await seed(stores.db)
        # A cache that outlived its db (the data dir was wiped) may hold old copies.
        await stores.cache.delete(*seeded_keys())
    except StoreUnavailable as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 1
    finally:
        await stores.close()
    print(f"seed: wrote {written} keys to {db_url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m appserver.seed", description="Write the demo data where absent."
    )
    parser.add_argument("--db", default="redis://127.0.0.1:6381", help="database URL")
    parser.add_argument(
        "--cache", default="memory://", help="cache URL: the seeded keys are deleted from it"
    )
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.db, args.cache))


if __name__ == "__main__":
    sys.exit(main())
