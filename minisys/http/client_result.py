"""What a client request ends in: a whole response, or an error saying what to answer.

On the request's journey these are what the gateway's proxy gets back from an appserver
through the pooled client (client.py): a `ClientResponse` read whole, or a `ClientError`
carrying the status a gateway should answer in its place - connect failure 502, timeout
504, broken response 502 - and `request_sent`, whether the upstream may have seen the
request (only then is retrying a POST unsafe).

Simpler than the real thing: urllib3 and aiohttp tell many more failures apart (TLS,
proxy, redirect loops, decode errors); a proxy only needs these three.
"""

from __future__ import annotations

import json
from typing import Any

from minisys.http.head import Headers, Limits

# Responses are bounded too: a runaway upstream must not fill the gateway's memory.
CLIENT_LIMITS = Limits(max_body=64 * 1024 * 1024)
# Methods that can be repeated without changing the outcome (RFC 9110 §9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


class ClientError(Exception):
    """A request failed; `status` is what a gateway would answer in its place."""

    status = 502

    def __init__(self, message: str, *, request_sent: bool = False) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class ConnectError(ClientError):
    status = 502


class ClientTimeout(ClientError, TimeoutError):
    status = 504


class BadResponse(ClientError):
    status = 502


class ClientResponse:
    __slots__ = ("body", "headers", "reason", "status", "version")

    def __init__(
        self, status: int, reason: str, headers: Headers, body: bytes, version: str
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status} {len(self.body)} bytes>"
