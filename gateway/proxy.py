"""Proxying duties: who the client really is, and which headers cross the gateway.

On the request's journey this is the gateway's edge, at both ends:

* **Inbound**, `GatewayConnection` wraps the shared HTTP server connection. When the peer
  is a trusted lb it may start the stream with a PROXY v1 line
  (`PROXY TCP4 203.0.113.7 127.0.0.1 53316 8081\\r\\n`, parsed by minisys.proxyproto); the
  connection takes the real client address from it and hands the rest to the HTTP parser.
  From any other peer that line is just a malformed request (400): otherwise anybody
  could claim any address and dodge per-IP limits. `X-Forwarded-For` sent by a client is
  likewise never used to decide who the client is.

* **Outbound**, `upstream_headers` builds what the upstream sees and `client_headers`
  what goes back. Hop-by-hop fields describe one connection, not the message, so a proxy
  must drop them in both directions (RFC 9110 §7.6.1): `Connection` and every field it
  names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`,
  `Trailer`, `Proxy-Authorization`, `Proxy-Authenticate`. The body is re-framed with our
  own `Content-Length`, which is also what makes request smuggling through us impossible:
  whatever framing the client used, the upstream gets exactly one request with an exact
  length.

  A client may list any name in `Connection`, hoping we strip something we rely on; it
  does not matter here, because the fields we rely on (`X-Forwarded-*`, `X-Request-ID`,
  `X-Consumer-ID`, `Via`, `Host`) are removed from the client's copy and set by us after
  stripping. Credentials (`Authorization`, `X-API-Key`) are stripped on authenticated
  routes: the upstream trusts `X-Consumer-ID` instead and never sees a key.

      X-Forwarded-For: <client>            (appended to a trusted HTTP proxy's list)
      X-Forwarded-Proto: http
      X-Forwarded-Host: <the Host the client asked for>
      Via: 1.1 minisys-gateway             (appended to any Via already present)
      X-Request-ID: <kept or minted>
      X-Consumer-ID: <consumer id>         (only on authenticated routes)

Simpler than the real thing: no RFC 7239 `Forwarded` header, no TLS (so Proto is always
http), no PROXY v2, no WebSocket/Upgrade tunnelling (Upgrade is stripped, so the upstream
answers as plain HTTP).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Awaitable, Callable
from random import randbytes

from minisys.http.head import Headers
from minisys.http.message import Request, Response, problem_body
from minisys.http.server import HttpConnection, HttpSettings
from minisys.proxyproto import MAX_V1_LENGTH, ProxyProtocolError, parse_v1

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
# Fields only the gateway may set: the client's copies are dropped before ours go on.
GATEWAY_OWNED = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
        "x-consumer-id",
        "content-length",
        "forwarded",
    }
)
CREDENTIALS = frozenset({"authorization", "x-api-key"})

# A request id we accept from outside: short, printable, no spaces or separators that
# could break log lines or header syntax. Anything else is replaced.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def new_request_id() -> str:
    """16 random bytes as hex: as unique as a uuid4, cheaper to make and to log.

    From the `random` module's generator (seeded from os.urandom, and reseeded in a
    forked child): an id needs to be unique, not secret, and `os.urandom` is a system
    call per request (~1.5 against ~0.7 µs here).
    """
    return randbytes(16).hex()


def pick_request_id(incoming: str | None) -> str:
    if incoming is not None and REQUEST_ID_RE.fullmatch(incoming):
        return incoming
    return new_request_id()


def _connection_tokens(value: str, into: set[str]) -> None:
    if value in ("keep-alive", "close", "Keep-Alive", "Close"):
        return  # what nearly every peer sends: names no other field
    into.update(t.strip().lower() for t in value.split(",") if t.strip())


# What each field is to the proxy, by its name as sent (a dict lookup per field instead of
# a lower() and up to seven comparisons; both lists run for every request).
_PASS, _HOP, _CONNECTION, _HOST, _XFF, _VIA, _OWNED, _CREDENTIAL, _LENGTH = range(9)
# Distinct field names remembered per direction; real traffic uses a few dozen.
MAX_FIELD_KINDS = 1024
_request_kinds: dict[str, int] = {}
_response_kinds: dict[str, int] = {}
# Response fields the client never gets from the upstream: our server writes its own Date
# and Server, and the request id is ours to echo.
_REPLACED_IN_RESPONSE = frozenset({"date", "server", "x-request-id"})


def _kind(name: str, response: bool) -> int:
    lname = name.lower()
    if lname == "connection":
        kind = _CONNECTION
    elif lname in HOP_BY_HOP:
        kind = _HOP
    elif lname == "via":
        kind = _VIA
    elif response:
        if lname == "content-length":
            kind = _LENGTH
        else:
            kind = _OWNED if lname in _REPLACED_IN_RESPONSE else _PASS
    elif lname == "host":
        kind = _HOST
    elif lname == "x-forwarded-for":
        kind = _XFF
    elif lname in GATEWAY_OWNED:
        kind = _OWNED
    else:
        kind = _CREDENTIAL if lname in CREDENTIALS else _PASS
    kinds = _response_kinds if response else _request_kinds
    if len(kinds) < MAX_FIELD_KINDS:
        kinds[name] = kind
    return kind


def upstream_headers(
    incoming: Headers,
    *,
    client_ip: str,
    via: str,
    request_id: str,
    consumer: str | None,
    strip_credentials: bool,
    trusted_hop: bool,
) -> list[tuple[str, str]]:
    """The header list sent upstream (see the module docstring for every rule).

    One pass over the fields (this runs for every request); fields named by `Connection`
    are only known at the end, so they are filtered afterwards, in the rare case there are
    any.
    """
    out: list[tuple[str, str]] = []
    named: set[str] = set()
    forwarded_for: list[str] = []
    vias: list[str] = []
    host = ""
    kinds = _request_kinds
    for name, value in incoming:
        kind = kinds.get(name)
        if kind is None:
            kind = _kind(name, False)
        if kind == _PASS:
            out.append((name, value))
        elif kind == _HOST:
            host = value
            out.append((name, value))
        elif kind == _CREDENTIAL:
            if not strip_credentials:
                out.append((name, value))
        elif kind == _XFF:
            if trusted_hop:
                forwarded_for.append(value)
        elif kind == _VIA:
            vias.append(value)
        elif kind == _CONNECTION:
            _connection_tokens(value, named)
        # _HOP and _OWNED fields are dropped
    named.discard("host")
    if named:
        out = [(n, v) for n, v in out if n.lower() not in named]
    forwarded_for.append(client_ip)
    vias.append(f"1.1 {via}")
    out.append(("X-Forwarded-For", ", ".join(forwarded_for)))
    out.append(("X-Forwarded-Proto", "http"))
    if host:
        out.append(("X-Forwarded-Host", host))
    out.append(("Via", ", ".join(vias)))
    out.append(("X-Request-ID", request_id))
    if consumer is not None:
        out.append(("X-Consumer-ID", consumer))
    return out


def client_headers(
    upstream: Headers, *, via: str, request_id: str, keep_length: bool
) -> list[tuple[str, str]]:
    """The upstream's response headers as the client gets them.

    Framing is the server's job (it frames the body it actually sends), so Content-Length
    is dropped — except for HEAD responses (`keep_length`), whose Content-Length describes
    the body a GET would have had and has no body here to be recomputed from.
    """
    out: list[tuple[str, str]] = []
    named: set[str] = set()
    vias: list[str] = []
    kinds = _response_kinds
    for name, value in upstream:
        kind = kinds.get(name)
        if kind is None:
            kind = _kind(name, True)
        if kind == _PASS or (kind == _LENGTH and keep_length):
            out.append((name, value))
        elif kind == _VIA:
            vias.append(value)
        elif kind == _CONNECTION:
            _connection_tokens(value, named)
        # _HOP, _OWNED and a GET's _LENGTH are dropped
    if named:
        out = [(n, v) for n, v in out if n.lower() not in named]
    vias.append(f"1.1 {via}")
    out.append(("Via", ", ".join(vias)))
    out.append(("X-Request-ID", request_id))
    return out


def is_trusted(ip: str, networks: list) -> bool:
    if not networks or not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in networks)


_PROXY_ERROR = problem_body(400, detail="invalid PROXY protocol header")
PROXY_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/problem+json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(_PROXY_ERROR), _PROXY_ERROR)
)


class GatewayConnection(HttpConnection):
    """The HTTP server connection, plus an optional PROXY v1 line from trusted peers.

    `trusted_hop` tells the handler whether the peer is a trusted *HTTP* proxy (nginx,
    HAProxy in http mode) whose `X-Forwarded-For` may be kept and extended. A connection
    that starts with a PROXY line comes from an L4 proxy, which never adds that header, so
    there the client's own copy is dropped like anyone else's. The handler reads the real client
    address from `peer`, which the PROXY line replaces. The gateway's handler takes the
    connection as a second argument to see both.
    """

    def __init__(
        self,
        handle: Callable[[Request, GatewayConnection], Awaitable[Response]],
        settings: HttpSettings,
        trusted: list,
        now: Callable[[Request, GatewayConnection], bool] | None = None,
        hot: Callable[[GatewayConnection, bytes], bool] | None = None,
    ) -> None:
        super().__init__(lambda request: handle(request, self), settings)
        self._now_handler = now
        if hot is not None:  # the raw hot path (hot.py), offered idle reads first
            self.take_request = functools.partial(hot, self)
        self.trusted = trusted
        self.trusted_hop = False
        self._proxy_buffer: bytes | None = None

    def handle_now(self, request: Request) -> bool:
        # The pipeline's callback fast path (Gateway.handle_now), when given one.
        return self._now_handler is not None and self._now_handler(request, self)

    def on_connect(self) -> None:
        super().on_connect()
        self.trusted_hop = is_trusted(str(self.peer[0]), self.trusted)
        self._proxy_buffer = b"" if self.trusted_hop else None

    def on_data(self, data: bytes) -> None:
        if self._proxy_buffer is None:
            super().on_data(data)
            return
        buffer = self._proxy_buffer + data
        if not buffer.startswith(b"PROXY"[: len(buffer)]):
            # A trusted peer may also speak plain HTTP (the header is optional).
            self._proxy_buffer = None
            super().on_data(buffer)
            return
        try:
            header, consumed = parse_v1(buffer)
        except ProxyProtocolError:
            self._proxy_buffer = None
            self.write(PROXY_REFUSAL)
            self.close()
            return
        if header is None:
            self._proxy_buffer = buffer if len(buffer) < MAX_V1_LENGTH else None
            return
        self._proxy_buffer = None
        # An L4 proxy never writes HTTP headers, so any X-Forwarded-For on this connection
        # came from the client itself: no longer a trusted hop.
        self.trusted_hop = False
        if header.source is not None:
            self.peer = header.source
        rest = buffer[consumed:]
        if rest:
            super().on_data(rest)
