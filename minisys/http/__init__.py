"""HTTP/1.1 for every hop of the stack: codec, server, pooled client, web framework.

The gateway and the appserver receive HTTP through this package, the gateway's proxy and
the load generator send it, and the admin APIs and dashboard are written with its web
framework. A map, in the order bytes meet it:

- `head.py`       request/status line and header-field grammar, `Headers`, `Limits`,
                  `HttpError` (the only exception a peer's bytes can raise)
- `framing.py`    where a body ends: Content-Length vs chunked, the anti-smuggling rules
- `codec.py`      sans-I/O `RequestParser` / `ResponseParser`: bytes in, events out
- `serialize.py`  messages and chunks back to bytes, refusing header injection
- `message.py`    `Request`, `Response`, `json_response`, `problem` (RFC 9457)
- `respond.py`    cached status lines and Date/Server, problem+json error responses
- `server.py`     the asyncio Protocol server: keep-alive, pipelining, 100-continue,
                  timeouts (header, body, handler), limits, graceful drain
- `client.py`     `HttpClient`: keep-alive pool per origin, connect/read/total timeouts
- `web.py`        `App`: router with `{params}`, middleware, errors as problem+json,
                  request ids, access log, `/healthz`, `/metrics`
- `loadgen.py`    an asyncio load generator (keep-alive connections, latency percentiles)
- `testkit.py`    for tests: a server in a thread, a raw-socket probe, the smuggling table

`PROTOCOL.md` shows the wire format with hex examples; `README.md` explains the design.
"""

from minisys.http.client import ClientError, ClientResponse, HttpClient
from minisys.http.codec import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from minisys.http.head import Headers, HttpError, Limits
from minisys.http.message import Request, Response, json_response, problem
from minisys.http.serialize import serialize_request, serialize_response
from minisys.http.server import HttpServer, HttpSettings, http_server
from minisys.http.web import App, Problem

__all__ = [
    "App",
    "ClientError",
    "ClientResponse",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Headers",
    "HttpClient",
    "HttpError",
    "HttpServer",
    "HttpSettings",
    "Limits",
    "Problem",
    "Request",
    "RequestHead",
    "RequestParser",
    "Response",
    "ResponseHead",
    "ResponseParser",
    "http_server",
    "json_response",
    "problem",
    "serialize_request",
    "serialize_response",
]
