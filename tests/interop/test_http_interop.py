"""Our HTTP server with real clients (http.client, urllib, curl) and next to real nginx.

The nginx cases run the same malformed-input table (`testkit.VECTORS`) against nginx 1.22
and assert the status nginx gave in the spec's probe: if one fails, our reading of what
nginx does (and so what we copied) was wrong, not necessarily our server.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from minisys.http.message import Request, Response, json_response
from minisys.http.server import http_server
from minisys.http.testkit import VECTORS, ServerThread, probe
from minisys.http.web import App
from minisys.server import ServerConfig
from minisys.testing import ServerFailed, free_port, nginx_server

pytestmark = pytest.mark.interop

app = App("interop", access_log=False)


@app.get("/hello")
async def hello(request: Request) -> Response:
    return json_response({"hello": "world", "peer_port": request.peer[1]})


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(200, [("Content-Type", "application/octet-stream")], request.body)


@pytest.fixture(scope="module")
def srv():
    with ServerThread(
        lambda cfg: http_server("interop", cfg, app), ServerConfig(idle_timeout=0)
    ) as s:
        yield s


def test_http_client_keep_alive_reuses_the_connection(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    ports = set()
    for _ in range(3):
        conn.request("GET", "/hello")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/json"
        ports.add(json.loads(response.read())["peer_port"])
    conn.close()
    assert len(ports) == 1, "all three requests should use one TCP connection"


def test_http_client_chunked_upload(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("POST", "/echo", body=iter([b"abc", b"", b"defg"]), encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"abcdefg"
    conn.request("HEAD", "/hello")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b""
    assert int(response.getheader("Content-Length")) > 0
    conn.close()


def test_urllib_json_and_problem_errors(srv):
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/hello", timeout=5) as r:
        assert json.loads(r.read())["hello"] == "world"
    req = urllib.request.Request(
        f"http://127.0.0.1:{srv.port}/echo", data=b'{"a": 1}', method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.read() == b'{"a": 1}'
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/missing", timeout=5)
    assert info.value.code == 404
    assert info.value.headers["Content-Type"] == "application/problem+json"
    assert json.loads(info.value.read())["status"] == 404


def curl(*args: str) -> subprocess.CompletedProcess:
    path = shutil.which("curl")
    if path is None:
        pytest.skip("curl is not installed")
    return subprocess.run([path, "-sS", *args], capture_output=True, text=True, timeout=20)


def test_curl_reuses_the_connection(srv):
    url = f"http://127.0.0.1:{srv.port}/hello"
    result = curl("-v", url, url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"hello":"world"') == 2
    assert "Re-using existing connection" in result.stderr


def test_curl_chunked_upload_with_expect_continue(srv):
    body = "x" * 5000
    result = curl(
        "-v",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        body,
        f"http://127.0.0.1:{srv.port}/echo",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == body
    assert "HTTP/1.1 100 Continue" in result.stderr


def test_curl_http10(srv):
    result = curl("-0", "-i", f"http://127.0.0.1:{srv.port}/hello")
    assert result.returncode == 0 and "Connection: close" in result.stdout


# --- nginx, probed with the same table -------------------------------------------------


# The inside of nginx's http block (minisys.testing.nginx_server writes the rest).
NGINX_HTTP = """
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}"""


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()  # nginx takes its port from the config, not --port 0
    try:
        proc = nginx_server(tmp, NGINX_HTTP.format(port=port), port, connections=64).start()
    except ServerFailed as e:
        pytest.skip(f"nginx did not start: {str(e)[-300:]}")
    with proc:
        yield port


NGINX_VECTORS = [v for v in VECTORS if v[3] is not None]


@pytest.mark.parametrize(
    ("name", "data", "ours", "expected"), NGINX_VECTORS, ids=[v[0] for v in NGINX_VECTORS]
)
def test_nginx_answers_as_the_spec_says(nginx, name, data, ours, expected):
    # nginx's lingering close keeps reading for lingering_timeout (5 s) after a 413 before
    # it closes, so allow a little more than that.
    statuses, closed = probe(nginx, data, timeout=8)
    assert statuses == [expected], f"nginx answered {statuses} to {name!r}"
    assert closed
