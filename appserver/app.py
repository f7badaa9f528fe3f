"""The shop's HTTP API: routes on top of `minisys.http.web`, errors as problem+json.

    POST  /users                 {"name", "email"}                → 201 user
    GET   /users/{id}                                             → user (cache-aside)
    PATCH /users/{id}            {"name"?, "email"?}              → user (invalidates cache)
    GET   /users/{id}/orders                                      → [order…] (SCAN MATCH)
    POST  /products              {"sku", "name", "price", "stock"} → 201 product
    GET   /products?limit=&after=                                 → {"items", "next"}
    GET   /products/{sku}                                         → product with stock
    PATCH /products/{sku}/stock  {"stock"}                        → product (invalidates)
    POST  /place-order           {"user_id", "items": [{"sku", "qty"}]}
                                 Idempotency-Key: <key> (optional) → 201 order
    GET   /orders/{id}                                            → order
    GET   /healthz   the process is alive      GET /readyz   the stores are reachable
    GET   /metrics   Prometheus text

Handlers are thin: parse and validate (`validation.py`), call the shop (`users.py`,
`products.py`, `orders.py`), shape the answer. One middleware turns whatever the shop
raises into HTTP: `ProblemError` → its status, `StoreUnavailable` → 503 with Retry-After,
`StoreError` → 500. Each problem carries the request id, so a user's bug report can be
matched with the log lines of every layer it crossed.

Readiness: the db is required (no db, no shop: 503). The cache being down is "degraded":
reads go to the db. The queue being down is "degraded" too: e-mail jobs wait in the
outbox (see `outbox.py`) and orders keep working, so we stay in the load balancer.

Read next: `shop.py` (how the pieces are wired), `orders.py`.

Simpler than the real thing: no authentication of its own (the gateway does that and
passes `X-Consumer-ID`), no ETags or conditional requests, no API versioning.
"""

from __future__ import annotations

import re
from typing import Any

from appserver import validation
from appserver.problems import ProblemError, unavailable
from appserver.products import DEFAULT_PAGE, MAX_PAGE
from appserver.shop import Shop
from appserver.stores import StoreError, StoreUnavailable
from minisys.http.web import App, Request, Response, json_response, problem
from minisys.logs import get_logger

# The gateway names the caller in X-Consumer-ID; idempotency keys are scoped to it.
CONSUMER_RE = re.compile(r"[A-Za-z0-9._:@-]{1,64}")

log = get_logger("appserver.app")


def _problem_response(exc: ProblemError, request: Request) -> Response:
    return problem(
        exc.status,
        exc.title,
        exc.detail or None,
        headers=list(exc.headers.items()),
        type=exc.type,
        request_id=request.request_id,
        **exc.extra,
    )


def build_app(shop: Shop) -> App:
    """The shop's routes on a fresh App that shares the shop's metrics registry."""
    app = App("appserver", registry=shop.registry)

    @app.middleware
    async def problems(request: Request, call_next: Any) -> Response:
        try:
            return await call_next(request)
        except ProblemError as exc:
            return _problem_response(exc, request)
        except StoreUnavailable as exc:
            log.warning("%s %s: %s", request.method, request.path, exc)
            return _problem_response(unavailable(exc.store, exc.detail), request)
        except StoreError as exc:
            log.error("%s %s: store error: %s", request.method, request.path, exc)
            return _problem_response(
                ProblemError(
                    500,
                    "Store error",
                    "a store answered unexpectedly; see the log",
                    type="store-error",
                ),
                request,
            )

    # --- users -------------------------------------------------------------------------

    @app.post("/users")
    async def create_user(request: Request) -> Response:
        fields = validation.new_user(validation.parse_body(request.body))
        user = await shop.users.create(fields)
        return json_response(user, 201, [("Location", f"/users/{user['id']}")])

    @app.get("/users/{id}")
    async def get_user(request: Request) -> Response:
        user_id = validation.path_id(request.params["id"], "user")
        user, cache = await shop.users.get(user_id)
        return json_response(user, headers=[("X-Cache", cache)])

    @app.patch("/users/{id}")
    async def patch_user(request: Request) -> Response:
        user_id = validation.path_id(request.params["id"], "user")
        changes = validation.user_patch(validation.parse_body(request.body))
        return json_response(await shop.users.update(user_id, changes))

    @app.get("/users/{id}/orders")
    async def user_orders(request: Request) -> Response:
        user_id = validation.path_id(request.params["id"], "user")
        return json_response({"items": await shop.orders.of_user(user_id)})

    # --- products ----------------------------------------------------------------------

    @app.post("/products")
    async def create_product(request: Request) -> Response:
        fields = validation.new_product(validation.parse_body(request.body))
        product = await shop.products.create(fields)
        return json_response(product, 201, [("Location", f"/products/{product['sku']}")])

    @app.get("/products")
    async def list_products(request: Request) -> Response:
        limit = validation.page_limit(request.query_param("limit"), DEFAULT_PAGE, MAX_PAGE)
        after = request.query_param("after")
        return json_response(await shop.products.page(limit, after))

    @app.get("/products/{sku}")
    async def get_product(request: Request) -> Response:
        sku = validation.path_sku(request.params["sku"])
        product, cache = await shop.products.get(sku)
        return json_response(product, headers=[("X-Cache", cache)])

    @app.patch("/products/{sku}/stock")
    async def set_stock(request: Request) -> Response:
        sku = validation.path_sku(request.params["sku"])
        stock = validation.stock_update(validation.parse_body(request.body))
        return json_response(await shop.products.set_stock(sku, stock))

    # --- orders ------------------------------------------------------------------------

    @app.post("/place-order")
    async def place_order(request: Request) -> Response:
        key = validation.idempotency_key(request.headers.get("idempotency-key"))
        order_request = validation.order_request(validation.parse_body(request.body))
        consumer = request.headers.get("x-consumer-id") or "anonymous"
        if not CONSUMER_RE.fullmatch(consumer):
            consumer = "anonymous"
        placed = await shop.orders.place(
            order_request,
            idempotency_key=key,
            consumer=consumer,
            request_id=request.request_id,
        )
        headers = [("Location", f"/orders/{placed.order['id']}")]
        if placed.replayed:
            headers.append(("Idempotent-Replayed", "true"))
        return json_response(placed.order, 201, headers)

    @app.get("/orders/{id}")
    async def get_order(request: Request) -> Response:
        order_id = validation.path_id(request.params["id"], "order")
        return json_response(await shop.orders.get(order_id))

    # --- readiness ---------------------------------------------------------------------

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        status = {
            "cache": "ok" if await shop.cache.reachable() else "down",
            "db": await _ping(shop.stores.db),
            "queue": await _ping(shop.stores.queue),
        }
        if status["db"] != "ok":
            return json_response({"status": "not ready", **status}, 503)
        degraded = "down" in (status["cache"], status["queue"])
        return json_response({"status": "degraded" if degraded else "ready", **status})

    return app


async def _ping(store: Any) -> str:
    try:
        await store.ping()
    except (StoreUnavailable, StoreError):
        return "down"
    return "ok"
