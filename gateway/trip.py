"""One request's trip through the gateway, and the gateway's own refusals.

On the request's journey these travel with every request inside pipeline.py: a `Trip` is
what the pipeline's steps share about one request (its id, the client, the access-log
record, the rate-limit headers for the answer), created in step 1 and read in step 10.
A `Refusal` is raised by any step that answers for the upstream - 400, 401, 403, 404,
405, 429, 502, 503, 504 - and becomes an `application/problem+json` response carrying the
request id and (on limited routes) the rate-limit headers, so a client can tell the
gateway's "no" from the app's.

Simpler than the real thing: Kong's plugins share a per-request context table with any
keys they like; here the fields are fixed and listed.
"""

from __future__ import annotations

from typing import Any

from minisys.http.head import Headers
from minisys.http.message import PROBLEM_JSON, Response, problem_body

from .access_log import AccessRecord

# The problem type draft-ietf-httpapi-ratelimit-headers registers for a 429 body.
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"


class Trip:
    """What the steps of one request share: its id, client, log record, extra headers."""

    __slots__ = ("client_ip", "extra", "record", "rid", "start", "trusted_hop", "upstream_start")

    start: float  # perf_counter when the pipeline began
    rid: str
    client_ip: str
    record: AccessRecord
    trusted_hop: bool
    extra: list[tuple[str, str]]  # rate-limit headers for the answer
    upstream_start: float


class Refusal(Exception):
    """The gateway answers itself: a status, a problem+json detail and extra headers."""

    def __init__(
        self,
        status: int,
        detail: str,
        reason: str,
        headers: list[tuple[str, str]] | None = None,
        extra_doc: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.reason = reason
        self.headers = headers or []
        self.extra_doc = extra_doc or {}

    def answer(self, trip: Trip) -> Response:
        """The refusal as the client gets it; the access log learns why."""
        trip.record.reason = self.reason
        return self.response(trip.rid, trip.extra)

    def response(self, rid: str, extra: list[tuple[str, str]]) -> Response:
        h = Headers([("Content-Type", PROBLEM_JSON), ("X-Request-ID", rid)])
        for name, value in (*self.headers, *extra):
            if name == "Retry-After" and "Retry-After" in h:
                continue
            h.add(name, value)
        return Response(
            self.status, h, problem_body(self.status, detail=self.detail, **self.extra_doc)
        )
