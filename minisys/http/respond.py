"""Pieces of every response the server writes: status lines, Date/Server, error bodies.

On the request's journey this is the last step before bytes leave the gateway or the
appserver: `server.py` builds each response head from these cached pieces, so that the
per-response work is a dict lookup and one join. It also turns the two kinds of failure a
server must answer - a peer's bad bytes (`HttpError`) and a handler's mistake (wrong return
type) - into short problem+json responses.

Why cache: a status line and the Date header are the same for thousands of responses in a
row (the Date changes once a second), and formatting a date costs more than the rest of a
small response together.

Simpler than the real thing: nginx also adds ETag/Last-Modified for files and lets you
hide or rename the Server header per location; we send `Server: minisys` or nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable
from email.utils import formatdate

from minisys.http.head import HttpError
from minisys.http.message import PROBLEM_JSON, Response, problem_body
from minisys.http.serialize import reason_phrase

# Distinct (status, reason) lines remembered; handlers use a handful of statuses.
MAX_STATUS_LINES = 256

_date_cache = [0, ""]


def http_date(now: float) -> str:
    """RFC 9110 IMF-fixdate, computed once per second."""
    second = int(now)
    if _date_cache[0] != second:
        _date_cache[0] = second
        _date_cache[1] = formatdate(second, usegmt=True)
    return _date_cache[1]


# The Date and Server lines every response carries, rebuilt once per second per server name.
_common: dict[str, tuple[int, str, int]] = {}


def common_fields(server_header: str) -> tuple[str, int]:
    now = int(time.time())
    cached = _common.get(server_header)
    if cached is None or cached[0] != now:
        text = f"Date: {http_date(now)}\r\n"
        if server_header:
            text += f"Server: {server_header}\r\n"
        cached = _common[server_header] = (now, text, text.count("\n"))
    return cached[1], cached[2]


# The same as bytes, for heads built from bytes (answer_now.answer_raw).
_common_bytes: dict[str, tuple[int, bytes]] = {}


def common_bytes(server_header: str) -> bytes:
    now = int(time.time())
    cached = _common_bytes.get(server_header)
    if cached is None or cached[0] != now:
        cached = _common_bytes[server_header] = (now, common_fields(server_header)[0].encode())
    return cached[1]


_status_lines: dict[tuple[int, str | None], str] = {}


def status_line(status: int, reason: str | None) -> str:
    line = _status_lines.get((status, reason))
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status {status}")
        line = f"HTTP/1.1 {status} {reason or reason_phrase(status)}\r\n"
        if len(_status_lines) < MAX_STATUS_LINES and reason is None:
            _status_lines[(status, reason)] = line
    return line


def error_response(err: HttpError) -> Response:
    """A short problem+json answer to a request we could not parse or accept."""
    return Response(
        err.status, [("Content-Type", PROBLEM_JSON)], problem_body(err.status, detail=err.reason)
    )


def check_response(response: object) -> None:
    """Refuse what the handler should not have returned, so it becomes a clean 500."""
    if not isinstance(response, Response):
        raise TypeError(f"handler returned {type(response).__name__}, not Response")
    body = response.body
    if not isinstance(body, bytes | bytearray | memoryview | AsyncIterable):
        raise TypeError(f"response body is {type(body).__name__}, not bytes or async iterable")
