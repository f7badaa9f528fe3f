"""Fixtures for the gateway's socket tests: stub upstreams, a gateway process, raw HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import textwrap
from dataclasses import dataclass

import pytest

from minisys.testing import ServerFailed, ServerProcess, free_port, nginx_server

STUB = "tests.gateway.stub_upstream"


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)

    def upstream_headers(self) -> dict[str, str]:
        """For echoed requests: the headers the upstream saw, by lower-case name."""
        return {n.lower(): v for n, v in self.json()["headers"]}


def request(port: int, method: str, target: str, headers=None, body: bytes = b"") -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        skip_host = any(name.lower() == "host" for name in headers or {})
        conn.putrequest(method, target, skip_host=skip_host, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def raw(port: int, data: bytes, source: str = "127.0.0.1", wait_close: bool = True) -> bytes:
    """Send bytes, read until the server closes (or 3 s of silence), return what came back."""
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(3)
        sock.connect(("127.0.0.1", port))
        sock.sendall(data)
        out = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                out += chunk
                if not wait_close and b"\r\n\r\n" in out:
                    break
        except TimeoutError:
            pass
        return out


def stub_log(port: int) -> list[str]:
    return request(port, "GET", "/__log").json()


# Session scope: pytest would keep "package" fixtures of a directory without __init__.py
# alive to the end of the session anyway; saying so is clearer. They are idle processes.
@pytest.fixture(scope="session")
def stubs():
    with (
        ServerProcess(STUB, ready=["stub"]) as a,
        ServerProcess(STUB, ready=["stub"]) as b,
        ServerProcess(STUB, ready=["stub"]) as c,
    ):
        yield a.port, b.port, c.port


def gateway_toml(stubs: tuple[int, int, int], dead: int, extra: str = "") -> str:
    a, b, c = stubs
    return textwrap.dedent(
        f"""
        [gateway]
        trusted_proxies = ["127.0.0.2"]
        max_body = "1kb"
        max_header = "2kb"

        [upstreams.main]
        members = ["127.0.0.1:{a}", "127.0.0.1:{b}"]
        read_timeout = 0.5
        total_timeout = 2.0

        [upstreams.flaky]
        members = ["127.0.0.1:{dead}", "127.0.0.1:{a}"]
        retries = 1

        [upstreams.failing]
        members = ["127.0.0.1:{c}"]
        retries = 0
        breaker_failures = 3
        breaker_cooldown = 0.5

        [[routes]]
        name = "public"
        path = "/public"
        upstream = "main"

        [[routes]]
        name = "svc"
        path = "/svc"
        strip_prefix = true
        upstream = "main"

        [[routes]]
        name = "private"
        path = "/private"
        upstream = "main"
        auth = true

        [[routes]]
        name = "admin"
        path = "/admin"
        upstream = "main"
        auth = true
        consumers = ["alice"]

        [[routes]]
        name = "limited"
        path = "/limited"
        upstream = "main"
        auth = true

        [[routes]]
        name = "anon"
        path = "/anon"
        upstream = "main"
        client_limit = {{ quota = 2, window = 60 }}

        [[routes]]
        name = "authsvc"
        path = "/authsvc"
        strip_prefix = true
        upstream = "main"
        auth = true

        [[routes]]
        name = "flaky"
        path = "/flaky"
        upstream = "flaky"

        [[routes]]
        name = "breaker"
        path = "/breaker"
        strip_prefix = true
        upstream = "failing"

        [consumers.alice]
        keys = ["alice-key-0001"]
        jwt_issuer = "alice-iss"
        jwt_secret = "alice-secret"

        [consumers.bob]
        keys = ["bob-key-00001"]

        [consumers.erin]
        keys = ["erin-key-00001"]
        max_concurrency = 1

        [consumers.carol]
        keys = ["carol-key-0001"]
        limit = {{ quota = 3, window = 60 }}

        [consumers.dave]
        keys = ["dave-key-00001"]
        limit = {{ quota = 1, window = 60 }}
        """
    ) + textwrap.dedent(extra)


@dataclass
class GatewayProc:
    proc: ServerProcess
    config_path: str

    @property
    def port(self) -> int:
        return self.proc.ports["gateway"]

    @property
    def admin(self) -> int:
        return self.proc.ports["gateway-admin"]


@pytest.fixture(scope="session")
def gateway(stubs, tmp_path_factory):
    path = tmp_path_factory.mktemp("gw") / "gateway.toml"
    path.write_text(gateway_toml(stubs, free_port()))
    with ServerProcess(
        "gateway", "--admin-port", "0", "--config", str(path), ready=["gateway", "gateway-admin"]
    ) as proc:
        yield GatewayProc(proc, str(path))


@pytest.fixture(scope="session")
def h():
    """The helpers above, for test modules (which must not import conftest)."""
    import types

    return types.SimpleNamespace(
        request=request, raw=raw, stub_log=stub_log, free_port=free_port,
        gateway_toml=gateway_toml,
    )  # fmt: skip


# The inside of nginx's http block (minisys.testing.nginx_server writes the rest).
NGINX_PROXY_HTTP = """
    upstream main {{ server 127.0.0.1:{a}; server 127.0.0.1:{b}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://main;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""


@pytest.fixture(scope="session")
def nginx_proxy(stubs, tmp_path_factory):
    """nginx as the reference reverse proxy in front of the same stubs (or a skip)."""
    import shutil

    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    workdir = tmp_path_factory.mktemp("nginx")
    port = free_port()
    http = NGINX_PROXY_HTTP.format(a=stubs[0], b=stubs[1], port=port)
    try:
        proc = nginx_server(workdir, http, port, connections=256).start()
    except ServerFailed:
        pytest.skip(f"nginx did not start: {(workdir / 'error.log').read_text()[-300:]}")
    with proc:
        yield port
