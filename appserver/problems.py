"""Errors the shop raises, shaped as RFC 9457 problem details.

Every refusal the shop makes — a bad request, an unknown product, not enough stock, a
database that is down — is raised as a `ProblemError` deep in the business code and turned
into one HTTP answer at the edge (`app.py`):

    HTTP/1.1 409 Conflict
    Content-Type: application/problem+json

    {"type": "urn:minisys:problem:out-of-stock", "title": "Out of stock", "status": 409,
     "detail": "not enough stock for sku-2", "unavailable": [{"sku": "sku-2",
     "requested": 3, "available": 1}]}

`type` names the kind of problem so a client can branch on it without parsing English;
`title` is for people; extra members carry the details a client needs to recover.
The business code never builds HTTP responses itself, which keeps it testable with plain
function calls.

Read next: `validation.py` (the 4xx family), `app.py` (where problems become responses).

Simpler than the real thing: problem types are URNs, not dereferenceable URLs with docs.
"""

from __future__ import annotations

from typing import Any

TYPE_PREFIX = "urn:minisys:problem:"


class ProblemError(Exception):
    """A refusal with an HTTP status and an RFC 9457 body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        type: str = "",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = TYPE_PREFIX + type if type else "about:blank"
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The problem document (without `instance`; the edge may add the request id)."""
        doc: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            doc["detail"] = self.detail
        doc.update(self.extra)
        return doc


def unavailable(store: str, detail: str) -> ProblemError:
    """503 for a store we cannot reach: the client should retry (with the same
    Idempotency-Key, so a retried order is never placed twice)."""
    return ProblemError(
        503,
        "Service unavailable",
        f"the {store} is unreachable ({detail}); retry later",
        type="store-unavailable",
        headers={"Retry-After": "1"},
        store=store,
    )
