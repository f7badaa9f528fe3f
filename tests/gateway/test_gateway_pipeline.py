"""The pipeline in-process with a scripted transport: every refusal's status and shape."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from gateway import access_log
from gateway.config import build
from gateway.pipeline import Gateway
from gateway.upstream import ConnectFailed, UpstreamReset
from minisys.http.head import Headers
from minisys.http.message import Request
from minisys.logs import JsonFormatter

CONFIG = {
    "upstreams": {"app": {"members": ["127.0.0.1:1", "127.0.0.1:2"], "retries": 1}},
    "routes": [
        {"name": "read", "path": "/read", "upstream": "app", "methods": ["GET", "HEAD"]},
        {"name": "app", "path": "/app", "upstream": "app"},
    ],
}


class Reply:
    def __init__(self, status=200, headers=(), body=b"ok"):
        self.status, self.reason, self.body = status, "", body
        self.headers = Headers(headers)


class Transport:
    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.sent = []

    async def send(self, host, port, method, target, headers, body, timeout):
        self.sent.append((port, method, target))
        outcome = self.behaviour(port)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def run(gateway, method, target, headers=()):
    request = Request(method, target, Headers([("Host", "x"), *headers]), peer=("192.0.2.9", 1))
    return asyncio.run(gateway.handle(request))


def make(behaviour):
    transport = Transport(behaviour)
    return Gateway(build(CONFIG), transport_factory=lambda settings: transport), transport


@pytest.mark.parametrize(
    ("error", "status", "detail"),
    [
        (ConnectFailed("refused"), 502, "upstream unavailable (connect)"),
        (ConnectFailed("silent", timed_out=True), 504, "upstream connect timed out"),
    ],
)
def test_connect_failures_after_retries(error, status, detail):
    gw, transport = make(lambda port: error)
    response = run(gw, "POST", "/app/x")
    assert response.status == status
    assert json.loads(response.body)["detail"] == detail
    assert len(transport.sent) == 2  # retried once on the other member


def test_reset_on_post_is_502_without_retry():
    gw, transport = make(lambda port: UpstreamReset("gone"))
    assert run(gw, "POST", "/app/x").status == 502
    assert len(transport.sent) == 1


def test_405_lists_allowed_methods():
    gw, _ = make(lambda port: Reply())
    response = run(gw, "DELETE", "/read/x")
    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD"


def test_head_keeps_the_upstreams_content_length():
    gw, _ = make(lambda port: Reply(headers=[("Content-Length", "1234")], body=b""))
    response = run(gw, "HEAD", "/read/x")
    assert response.headers["Content-Length"] == "1234"
    response = run(gw, "GET", "/read/x")
    assert "Content-Length" not in response.headers


def test_bad_path_is_400_and_never_forwarded():
    gw, transport = make(lambda port: Reply())
    assert run(gw, "GET", "/app/%zz").status == 400
    assert transport.sent == []


def test_access_log_json_fields(caplog):
    gw, _ = make(lambda port: Reply())
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        run(gw, "GET", "/app/logged", [("X-Request-ID", "rid-42")])
    record = next(r for r in caplog.records if r.name == "gateway.access")
    doc = json.loads(JsonFormatter("gateway").format(record))
    assert doc["request_id"] == "rid-42"
    assert doc["route"] == "app" and doc["status"] == 200 and doc["client"] == "192.0.2.9"
    assert doc["upstream"].startswith("127.0.0.1:") and doc["attempts"] == 1
    assert access_log.log.name == "gateway.access"
