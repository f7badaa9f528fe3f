"""The shop's HTTP API called in-process: statuses, problem+json, nothing written on refusal."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appserver.app import build_app
from appserver.products import STOCK_TTL
from appserver.users import USER_TTL
from minisys.http.head import Headers
from minisys.http.message import Request


def call(app, method: str, target: str, body: object = None, headers=()) -> tuple:
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    request = Request(method, target, Headers([("Host", "shop"), *headers]), raw)
    response = asyncio.run(app(request))
    doc = json.loads(response.body) if response.body else None
    return response.status, response.headers, doc


@pytest.fixture
def app(shop):
    return build_app(shop)


def snapshot(shop) -> dict:
    db = shop.stores.db.data
    return {k: v for k, v in db.items() if k != "seq:order"}, list(shop.stores.queue.jobs)


def test_place_order_answers_201_with_location(app, shop):
    status, headers, order = call(
        app,
        "POST",
        "/place-order",
        {"user_id": 1, "items": [{"sku": "sku-1", "qty": 1}]},
        [("X-Request-ID", "rid-42")],
    )
    assert status == 201 and headers["Location"] == f"/orders/{order['id']}"
    assert order["request_id"] == "rid-42"
    assert json.loads(shop.stores.queue.jobs[0].body)["request_id"] == "rid-42"
    assert call(app, "GET", f"/orders/{order['id']}")[2] == order
    assert call(app, "GET", "/users/1/orders")[2]["items"] == [order]


def test_idempotency_key_over_http(app):
    body = {"user_id": 2, "items": [{"sku": "sku-2", "qty": 1}]}
    key = [("Idempotency-Key", "abc-123")]
    s1, h1, first = call(app, "POST", "/place-order", body, key)
    s2, h2, again = call(app, "POST", "/place-order", body, key)
    assert (s1, s2) == (201, 201) and first == again
    assert "Idempotent-Replayed" not in h1 and h2["Idempotent-Replayed"] == "true"
    body["items"][0]["qty"] = 2
    status, _headers, doc = call(app, "POST", "/place-order", body, key)
    assert status == 422 and doc["type"] == "urn:minisys:problem:idempotency-mismatch"
    assert call(app, "POST", "/place-order", body, [("Idempotency-Key", "has space")])[0] == 400


BAD_ORDERS = [
    ({}, 422),
    ({"user_id": 1}, 422),
    ({"items": [{"sku": "sku-1", "qty": 1}]}, 422),
    ({"user_id": "1", "items": [{"sku": "sku-1", "qty": 1}]}, 422),
    ({"user_id": True, "items": [{"sku": "sku-1", "qty": 1}]}, 422),
    ({"user_id": 1, "items": []}, 422),
    ({"user_id": 1, "items": {"sku": "sku-1"}}, 422),
    ({"user_id": 1, "items": [{"sku": "sku-1", "qty": -1}]}, 422),
    ({"user_id": 1, "items": [{"sku": "sku-1", "qty": 0}]}, 422),
    ({"user_id": 1, "items": [{"sku": "sku-1", "qty": 1.5}]}, 422),
    ({"user_id": 1, "items": [{"sku": "sku-1", "qty": "2"}]}, 422),
    ({"user_id": 1, "items": [{"sku": "sku-1", "qty": 10**6}]}, 422),
    ({"user_id": 1, "items": [{"sku": "", "qty": 1}]}, 422),
    ({"user_id": 1, "items": [{"sku": "a b", "qty": 1}]}, 422),
    ({"user_id": 1, "items": [{"sku": "nope", "qty": 1}]}, 422),
    ({"user_id": 99, "items": [{"sku": "sku-1", "qty": 1}]}, 422),
    ({"user_id": 1, "items": [{"sku": "sku-1", "qty": 1}] * 51}, 422),
    ({"user_id": 1, "items": [{"sku": "sku-5", "qty": 6}]}, 409),
    (b"{not json", 400),
    (b"", 400),
    (b"\xff\xfe", 400),
    (b"[1, 2, 3]", 422),
    (b"[" * 100_000, 413),
    (json.dumps({"user_id": 1, "pad": "x" * 70_000}).encode(), 413),
]


@pytest.mark.parametrize(("body", "status"), BAD_ORDERS)
def test_bad_orders_are_refused_with_problem_json_and_nothing_written(app, shop, body, status):
    before = snapshot(shop)
    got, headers, doc = call(app, "POST", "/place-order", body)
    assert got == status
    assert headers["Content-Type"] == "application/problem+json"
    assert doc["status"] == status and doc["title"] and doc["request_id"]
    assert snapshot(shop) == before


# The shop is shared across examples on purpose: any state it reaches must still hold up.
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["user_id", "items", "sku", "qty"]), inner, max_size=4
            )
        ),
        max_leaves=12,
    )
)
def test_any_json_gets_201_or_a_4xx_problem(app, value):
    status, headers, _doc = call(app, "POST", "/place-order", json.dumps(value).encode())
    assert status == 201 or (
        400 <= status < 500 and headers["Content-Type"] == "application/problem+json"
    )


def test_users_crud_and_cache_invalidation(app, shop):
    status, headers, user = call(app, "POST", "/users", {"name": "Barbara", "email": "b@x.org"})
    assert status == 201 and user["id"] == 4 and headers["Location"] == "/users/4"
    status, headers, doc = call(app, "GET", "/users/4")
    assert doc == user and headers["X-Cache"] == "MISS"
    assert "user:4" in shop.stores.cache.data
    assert call(app, "GET", "/users/4")[1]["X-Cache"] == "HIT"
    status, _, patched = call(app, "PATCH", "/users/4", {"name": "Barbara Liskov"})
    assert status == 200 and patched == {**user, "name": "Barbara Liskov"}
    assert "user:4" not in shop.stores.cache.data
    assert call(app, "GET", "/users/4")[2]["name"] == "Barbara Liskov"
    assert call(app, "GET", "/users/99")[0] == 404
    assert call(app, "GET", "/users/abc")[0] == 404
    assert call(app, "PATCH", "/users/4", {})[0] == 422
    assert call(app, "POST", "/users", {"name": "x", "email": "nope"})[0] == 422
    assert call(app, "DELETE", "/users/4")[0] == 405


def test_cached_entries_expire_after_their_ttl(app, clock):
    assert call(app, "GET", "/users/1")[1]["X-Cache"] == "MISS"
    clock.advance(USER_TTL - 1)
    assert call(app, "GET", "/users/1")[1]["X-Cache"] == "HIT"
    clock.advance(2)
    assert call(app, "GET", "/users/1")[1]["X-Cache"] == "MISS"
    assert call(app, "GET", "/products/sku-1")[1]["X-Cache"] == "MISS"
    clock.advance(STOCK_TTL + 1)  # the stock expired, the description did not
    assert call(app, "GET", "/products/sku-1")[1]["X-Cache"] == "MISS"
    assert call(app, "GET", "/products/sku-1")[1]["X-Cache"] == "HIT"


def test_products_create_get_page_and_restock(app, shop):
    new = {"sku": "sku-9", "name": "Tray", "price": 300, "stock": 2}
    assert call(app, "POST", "/products", new)[0] == 201
    assert call(app, "POST", "/products", new)[0] == 409
    assert call(app, "GET", "/products/sku-9")[2] == new
    assert call(app, "GET", "/products/nope")[0] == 404
    status, _, page = call(app, "GET", "/products?limit=4")
    assert [p["sku"] for p in page["items"]] == ["sku-1", "sku-2", "sku-3", "sku-4"]
    status, _, page = call(app, "GET", f"/products?limit=4&after={page['next']}")
    assert [p["sku"] for p in page["items"]] == ["sku-5", "sku-9"] and page["next"] is None
    assert call(app, "GET", "/products?limit=0")[0] == 400
    status, _, restocked = call(app, "PATCH", "/products/sku-9/stock", {"stock": 40})
    assert status == 200 and restocked["stock"] == 40
    assert call(app, "GET", "/products/sku-9")[2]["stock"] == 40
    assert call(app, "PATCH", "/products/sku-9/stock", {"stock": -1})[0] == 422
    assert call(app, "PATCH", "/products/zzz/stock", {"stock": 1})[0] == 404


def test_db_down_is_503_problem_with_retry_after(app, shop):
    shop.stores.db.down = True
    status, headers, doc = call(
        app, "POST", "/place-order", {"user_id": 1, "items": [{"sku": "sku-1", "qty": 1}]}
    )
    assert status == 503 and headers["Retry-After"] == "1"
    assert doc["type"] == "urn:minisys:problem:store-unavailable" and doc["store"] == "db"
    assert call(app, "GET", "/readyz")[0] == 503


def test_readyz_reports_degraded_stores(app, shop):
    assert call(app, "GET", "/readyz")[2]["status"] == "ready"
    shop.stores.cache.down = True
    assert call(app, "GET", "/products/sku-1")[1]["X-Cache"] == "MISS"  # the failing read
    assert call(app, "GET", "/products/sku-1")[1]["X-Cache"] == "BYPASS"  # cooling down
    status, _, doc = call(app, "GET", "/readyz")
    assert status == 200 and doc == {
        "status": "degraded",
        "cache": "down",
        "db": "ok",
        "queue": "ok",
    }
    shop.stores.queue.down = True
    assert call(app, "GET", "/readyz")[2]["queue"] == "down"
    assert call(app, "GET", "/healthz")[0] == 200


def test_metrics_count_orders(app):
    call(app, "POST", "/place-order", {"user_id": 1, "items": [{"sku": "sku-5", "qty": 9}]})
    call(app, "POST", "/place-order", {"user_id": 1, "items": [{"sku": "sku-5", "qty": 1}]})
    request = Request("GET", "/metrics", Headers([("Host", "x")]))
    text = asyncio.run(app(request)).body.decode()
    assert 'appserver_orders_total{result="placed"} 1' in text
    assert 'appserver_orders_total{result="out-of-stock"} 1' in text
