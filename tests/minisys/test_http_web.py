"""The web framework, called directly (no sockets): routing, errors, middleware, ids, metrics."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from minisys.http.head import Headers, HttpError
from minisys.http.message import Request, Response, json_response
from minisys.http.web import App, Problem
from minisys.logs import request_id
from minisys.metrics import parse_text


def call(app: App, method: str, target: str, body: bytes = b"", headers=()) -> Response:
    request = Request(method, target, Headers([("Host", "x"), *headers]), body, peer=("1.2.3.4", 5))
    return asyncio.run(app(request))


def body_json(response: Response):
    return json.loads(response.body)


@pytest.fixture
def app():
    app = App("shop", access_log=False)

    @app.get("/users/{id}")
    async def get_user(request):
        return json_response({"id": request.params["id"], "rid": request_id.get()})

    @app.route(["PUT", "DELETE"], "/users/{id}")
    async def change_user(request):
        return Response(204)

    @app.post("/users")
    async def create_user(request):
        data = await request.json()
        if "name" not in data:
            raise Problem(422, detail="name is required", field="name")
        return json_response(data, status=201)

    @app.get("/files/{dir}/{name}")
    async def get_file(request):
        return json_response(request.params)

    @app.get("/users/me")
    async def me(request):
        return json_response({"me": True, "q": request.query_param("q")})

    @app.get("/boom")
    async def boom(request):
        raise RuntimeError("secret detail")

    @app.get("/teapot")
    async def teapot(request):
        raise HttpError(418, "short and stout")

    return app


def test_path_params_and_static_routes_first(app):
    assert body_json(call(app, "GET", "/users/42"))["id"] == "42"
    assert body_json(call(app, "GET", "/users/me?q=1")) == {"me": True, "q": "1"}
    assert body_json(call(app, "GET", "/files/a%20b/c.txt")) == {"dir": "a b", "name": "c.txt"}


def test_404_and_405_with_allow(app):
    r = call(app, "GET", "/nope")
    assert r.status == 404 and r.headers["content-type"] == "application/problem+json"
    assert body_json(r)["title"] == "Not Found"
    r = call(app, "POST", "/users/1")
    assert r.status == 405 and r.headers["allow"] == "DELETE, GET, HEAD, PUT"
    assert call(app, "GET", "/users/").status == 404  # an empty parameter does not match


def test_head_is_served_by_get(app):
    assert call(app, "HEAD", "/users/1").status == 200


def test_json_helpers_and_problems(app):
    r = call(app, "POST", "/users", b'{"name": "ada"}')
    assert r.status == 201 and body_json(r) == {"name": "ada"}
    r = call(app, "POST", "/users", b'{"name": ')
    assert r.status == 400 and "not valid JSON" in body_json(r)["detail"]
    r = call(app, "POST", "/users", b"")
    assert r.status == 400
    r = call(app, "POST", "/users", b"{}")
    assert r.status == 422 and body_json(r) == {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "name is required",
        "field": "name",
    }
    r = call(app, "GET", "/teapot")
    assert r.status == 418 and body_json(r)["detail"] == "short and stout"


def test_crash_is_500_without_leaking_details(app, caplog):
    with caplog.at_level(logging.ERROR):
        r = call(app, "GET", "/boom")
    assert r.status == 500 and "secret" not in r.body.decode()
    assert "secret detail" in caplog.text


def test_request_id_kept_when_sane_minted_otherwise(app):
    r = call(app, "GET", "/users/1", headers=[("X-Request-ID", "abc-123")])
    assert r.headers["x-request-id"] == "abc-123" and body_json(r)["rid"] == "abc-123"
    r = call(app, "GET", "/users/1", headers=[("X-Request-ID", "bad id\u00e9")])
    rid = r.headers["x-request-id"]
    assert rid != "bad id\u00e9" and len(rid) == 32 and body_json(r)["rid"] == rid
    assert request_id.get() is None  # reset after the request


def test_middleware_order_and_short_circuit(app):
    seen = []

    @app.middleware
    async def outer(request, call_next):
        seen.append("outer")
        response = await call_next(request)
        response.headers.add("X-Outer", "1")
        return response

    @app.middleware
    async def auth(request, call_next):
        seen.append("auth")
        if request.headers.get("authorization") != "ok":
            raise Problem(401, detail="who are you?")
        return await call_next(request)

    r = call(app, "GET", "/users/1")
    assert r.status == 401 and seen == ["outer", "auth"]
    # A Problem raised by a middleware propagates through the outer ones as an exception
    # (as in aiohttp); the App turns it into the response at the very top.
    assert "x-outer" not in r.headers
    r = call(app, "GET", "/users/1", headers=[("Authorization", "ok")])
    assert r.status == 200 and r.headers["x-outer"] == "1"


def test_healthz_and_checks(app):
    r = call(app, "GET", "/healthz")
    assert r.status == 200 and body_json(r) == {"status": "ok", "app": "shop"}

    @app.health_check
    async def db():
        raise ConnectionError("db down")

    r = call(app, "GET", "/healthz")
    assert r.status == 503 and body_json(r)["error"] == "db down"


def test_metrics_count_requests_by_route(app):
    call(app, "GET", "/users/1")
    call(app, "GET", "/users/2")
    call(app, "GET", "/nope")
    r = call(app, "GET", "/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    samples = parse_text(r.body.decode())
    key = ("http_requests_total", (("method", "GET"), ("route", "/users/{id}"), ("status", "200")))
    assert samples[key] == 2
    unmatched = (("method", "GET"), ("route", "<unmatched>"), ("status", "404"))
    assert samples[("http_requests_total", unmatched)] == 1


def test_access_log_line(caplog):
    app = App("logged")

    @app.get("/x")
    async def x(request):
        return Response(200)

    with caplog.at_level(logging.INFO, logger="minisys.http.access"):
        call(app, "GET", "/x?y=1")
    assert '"GET /x?y=1" 200' in caplog.text and "1.2.3.4" in caplog.text


def test_duplicate_route_is_refused(app):
    with pytest.raises(ValueError):
        app.get("/users/{id}")(lambda r: r)
