"""`Request` and `Response`: what a handler receives and returns.

On the request's journey these are the objects the appserver's routes and the gateway's
proxy actually touch: the server (`server.py`) builds a `Request` once a whole request
(head and body) has arrived, calls the handler, and writes the `Response` it gets back.
A response body is either bytes (sent with Content-Length) or an async iterator of bytes
(sent chunked on HTTP/1.1, or until close on HTTP/1.0) for streaming.

Errors are answered in RFC 9457's `application/problem+json` form, by the server for bad
framing and by the web framework for everything else, so a client sees one error shape:

    {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no route"}

Simpler than the real thing: the body is read whole before the handler runs (bounded by
`Limits.max_body`), as most Python web frameworks do by default; no streaming uploads.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

from minisys.http.head import Headers, HttpError
from minisys.http.serialize import reason_phrase

PROBLEM_JSON = "application/problem+json"
JSON = "application/json"


class Request:
    """One complete request as the handler sees it."""

    __slots__ = (
        "_query_params",
        "body",
        "headers",
        "keep_alive",
        "method",
        "params",
        "path",
        "peer",
        "query",
        "request_id",
        "state",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes = b"",
        *,
        version: str = "1.1",
        peer: tuple = ("", 0),
        keep_alive: bool = True,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.version = version
        self.peer = peer
        self.keep_alive = keep_alive
        path, _, query = (target if target[:1] == "/" else origin_path(target)).partition("?")
        self.path = path
        self.query = query
        self.params: dict[str, str] = {}  # filled by the router from `/users/{id}`
        self.request_id: str | None = None  # filled by the web framework
        self.state: dict[str, Any] = {}  # free space for middleware
        self._query_params: dict[str, list[str]] | None = None

    @property
    def query_params(self) -> dict[str, list[str]]:
        """`?a=1&a=2&b=` → {"a": ["1", "2"], "b": [""]}."""
        if self._query_params is None:
            self._query_params = parse_qs(self.query, keep_blank_values=True)
        return self._query_params

    def query_param(self, name: str, default: str | None = None) -> str | None:
        values = self.query_params.get(name)
        return values[0] if values else default

    async def json(self) -> Any:
        """The body parsed as JSON; a 400 HttpError (problem+json) if it is not JSON."""
        if not self.body:
            raise HttpError(400, "request body is empty; expected JSON")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"request body is not valid JSON: {exc}") from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"


def origin_path(target: str) -> str:
    """The path-and-query of a request target, from origin-form or absolute-form."""
    if target[:1] == "/" or target == "*":
        return target
    scheme, sep, rest = target.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    raise HttpError(400, "invalid request target")


def decoded_segments(path: str) -> list[str]:
    """`/users/a%20b/` → ["users", "a b", ""] (what the router matches against)."""
    return [unquote(s) for s in path.split("/")[1:]]


class Response:
    """Status, headers and a body of bytes or an async iterator of bytes."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(
        self,
        status: int = 200,
        headers: Iterable[tuple[str, str]] | Mapping[str, str] | Headers | None = None,
        body: bytes | AsyncIterable[bytes] = b"",
        *,
        reason: str | None = None,
    ) -> None:
        self.status = status
        if type(headers) is not Headers:  # checked first: the Mapping ABC check is slow
            if isinstance(headers, Mapping):
                headers = headers.items()
            headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.headers = headers
        self.body = body
        self.reason = reason

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


def json_response(
    obj: Any, status: int = 200, headers: Iterable[tuple[str, str]] | None = None
) -> Response:
    """`obj` as a compact UTF-8 JSON body."""
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    h = Headers([("Content-Type", JSON)])
    for name, value in headers or ():
        h.add(name, value)
    return Response(status, h, body)


def problem_body(
    status: int, title: str | None = None, detail: str | None = None, **extra: Any
) -> bytes:
    """An RFC 9457 problem document."""
    doc: dict[str, Any] = {
        "type": extra.pop("type", "about:blank"),
        "title": title or reason_phrase(status),
        "status": status,
    }
    if detail is not None:
        doc["detail"] = detail
    doc.update(extra)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def problem(
    status: int,
    title: str | None = None,
    detail: str | None = None,
    *,
    headers: Iterable[tuple[str, str]] | None = None,
    **extra: Any,
) -> Response:
    """An `application/problem+json` response, e.g. `problem(404, detail="no such user")`."""
    h = Headers([("Content-Type", PROBLEM_JSON)])
    for name, value in headers or ():
        h.add(name, value)
    return Response(status, h, problem_body(status, title, detail, **extra))
