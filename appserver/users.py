"""Users: the seed's plain cache-aside example (`GET /users/<id>`).

    key (db and cache)   value
    seq:user             last user id handed out (INCR mints the next one)
    user:<id>            {"id": 1, "name": "Ada", "email": "ada@example.com"}

Reads go through the cache (`USER_TTL`); an update writes the db in a WATCH/MULTI/EXEC
transaction (two PATCHes of different fields must not undo each other) and then deletes
the cached copy, so the next read refills it from the db. Delete-on-write rather than
write-through: a failed cache write can then only leave the cache *empty*, never wrong.

Read next: `products.py` (the same pattern plus stock), `orders.py`.

Simpler than the real thing: e-mail addresses are not unique, and users cannot be deleted.
"""

from __future__ import annotations

import json
from typing import Any

from appserver.cache_aside import GuardedCache
from appserver.problems import ProblemError
from appserver.stores import Db, Transaction
from appserver.transactions import CONFLICT, run_optimistic

# Profiles change rarely and every change invalidates: a long TTL is safe.
USER_TTL = 300.0


def user_key(user_id: int) -> str:
    return f"user:{user_id}"


def _not_found(user_id: int) -> ProblemError:
    return ProblemError(404, "User not found", f"no user with id {user_id}", type="not-found")


class Users:
    def __init__(self, db: Db, cache: GuardedCache) -> None:
        self.db = db
        self.cache = cache

    async def create(self, fields: dict[str, str]) -> dict[str, Any]:
        user_id = await self.db.incr("seq:user")
        user = {"id": user_id, **fields}
        await self.db.set(user_key(user_id), json.dumps(user).encode())
        return user

    async def get(self, user_id: int) -> tuple[dict[str, Any], str]:
        """The profile (cache-aside) and the cache status (HIT, MISS, BYPASS)."""
        (raw,), status = await self.cache.read_through_many(
            [user_key(user_id)], [USER_TTL], self.db.mget
        )
        if raw is None:
            raise _not_found(user_id)
        return json.loads(raw.decode()), status  # str: see Products.get

    async def update(self, user_id: int, changes: dict[str, str]) -> dict[str, Any]:
        key = user_key(user_id)

        async def attempt(tx: Transaction) -> Any:
            (raw,) = await tx.watch([key])
            if raw is None:
                raise _not_found(user_id)
            user = {**json.loads(raw), **changes}
            if await tx.execute([("SET", key, json.dumps(user))]) is None:
                return CONFLICT
            return user

        user = await run_optimistic(self.db, attempt)
        await self.cache.invalidate(key)
        return user
