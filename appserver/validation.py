"""Turning untrusted JSON into typed requests, or a clear 4xx problem.

Everything the shop stores passes through here first, so the rest of the code can trust
its input: a quantity is a positive int (not `true`, not `"2"`, not `-1`, not `1e9`), a
sku is short and printable, a body is not a megabyte of nonsense. Failures are collected,
not thrown at the first one, so a client learns everything wrong with its request at once:

    HTTP/1.1 422 Unprocessable Content
    Content-Type: application/problem+json

    {"type": "urn:minisys:problem:invalid-request", "title": "Invalid request",
     "status": 422, "detail": "2 fields are invalid",
     "errors": [{"field": "items[0].qty", "message": "must be an integer from 1 to 1000"},
                {"field": "user_id", "message": "is required"}]}

Status codes follow RFC 9110: 400 when the body is not JSON at all, 413 when it is too
large, 422 when it is JSON but not a valid request, 404 for an id in the path that cannot
exist (`/users/abc`).

Read next: `problems.py` for the error type, `orders.py` for what a valid order does.

Simpler than the real thing: hand-written checks instead of a schema language (JSON
Schema, pydantic); the rules are few enough to read in one screen.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from appserver.problems import ProblemError

# A request body larger than this is refused with 413 before it is parsed: an order with
# the maximum number of items is well under 8 KiB.
MAX_BODY_BYTES = 64 * 1024
# Items per order: a shop cart, not a bulk import; bounds the keys one transaction WATCHes.
MAX_ITEMS = 50
# Units of one sku per order: keeps totals far from any integer limit and stops typos.
MAX_QTY = 1000
# Prices are integer cents (never floats: 0.1 + 0.2 != 0.3); a million dollars is plenty.
MAX_PRICE_CENTS = 100_000_000
# Stock per sku; fits comfortably in a signed 64-bit DECRBY.
MAX_STOCK = 1_000_000_000
# Ids are positive and fit in 63 bits, like the INCR counters that mint them.
MAX_ID = 2**63 - 1
# Names and e-mail addresses (RFC 5321 caps a path at 254 octets).
MAX_NAME_CHARS = 100
MAX_EMAIL_CHARS = 254
# Idempotency keys: Stripe allows 255 characters; printable ASCII, no spaces.
MAX_IDEMPOTENCY_KEY_CHARS = 255

SKU_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
EMAIL_RE = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
ID_RE = re.compile(r"[1-9][0-9]{0,18}")
IDEMPOTENCY_KEY_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}")


@dataclass(frozen=True)
class Item:
    sku: str
    qty: int


@dataclass(frozen=True)
class OrderRequest:
    user_id: int
    items: tuple[Item, ...]  # one entry per sku, sorted by sku

    def fingerprint(self) -> str:
        """A canonical text of the request: equal for equal orders however they were spelt."""
        return json.dumps([self.user_id, [[i.sku, i.qty] for i in self.items]])


class _Errors:
    """Collects field errors; `raise_if_any` turns them into one 422 problem."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            n = len(self.items)
            raise ProblemError(
                422,
                "Invalid request",
                f"{n} field{'s are' if n > 1 else ' is'} invalid",
                type="invalid-request",
                errors=self.items,
            )


def parse_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 413/400/422 problem."""
    if len(body) > MAX_BODY_BYTES:
        raise ProblemError(413, "Body too large", f"at most {MAX_BODY_BYTES} bytes")
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProblemError(400, "Malformed JSON", "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ProblemError(
            422, "Invalid request", "the body must be a JSON object", type="invalid-request"
        )
    return value


def _int(
    errors: _Errors,
    obj: dict[str, Any],
    field: str,
    name: str,
    low: int,
    high: int,
    *,
    required: bool = True,
) -> int | None:
    if field not in obj:
        if required:
            errors.add(name, "is required")
        return None
    value = obj[field]
    # bool is a subclass of int in Python: `true` must not become quantity 1.
    if type(value) is not int or not low <= value <= high:
        errors.add(name, f"must be an integer from {low} to {high}")
        return None
    return value


def _text(
    errors: _Errors,
    obj: dict[str, Any],
    field: str,
    pattern: re.Pattern[str] | None,
    max_chars: int,
    *,
    name: str = "",
    required: bool = True,
) -> str | None:
    name = name or field
    if field not in obj:
        if required:
            errors.add(name, "is required")
        return None
    value = obj[field]
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
        errors.add(name, f"must be a string of 1 to {max_chars} characters")
        return None
    if pattern is not None and not pattern.fullmatch(value):
        errors.add(name, "is not in the expected format")
        return None
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        errors.add(name, "must not contain control characters")
        return None
    return value


def order_request(obj: dict[str, Any]) -> OrderRequest:
    """Validate `{"user_id": 1, "items": [{"sku": "sku-1", "qty": 2}, …]}`."""
    errors = _Errors()
    user_id = _int(errors, obj, "user_id", "user_id", 1, MAX_ID)
    totals: dict[str, int] = {}
    items = obj.get("items")
    if "items" not in obj:
        errors.add("items", "is required")
    elif not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        errors.add("items", f"must be a list of 1 to {MAX_ITEMS} items")
    else:
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                errors.add(f"items[{n}]", 'must be an object {"sku": …, "qty": …}')
                continue
            sku = _text(errors, item, "sku", SKU_RE, 64, name=f"items[{n}].sku")
            qty = _int(errors, item, "qty", f"items[{n}].qty", 1, MAX_QTY)
            if sku is not None and qty is not None:
                # The same sku twice is one line with the quantities added up.
                totals[sku] = totals.get(sku, 0) + qty
        for sku, qty in totals.items():
            if qty > MAX_QTY:
                errors.add("items", f"{sku}: at most {MAX_QTY} units per order")
    errors.raise_if_any()
    assert user_id is not None
    return OrderRequest(user_id, tuple(Item(s, q) for s, q in sorted(totals.items())))


def new_user(obj: dict[str, Any]) -> dict[str, str]:
    errors = _Errors()
    name = _text(errors, obj, "name", None, MAX_NAME_CHARS)
    email = _text(errors, obj, "email", EMAIL_RE, MAX_EMAIL_CHARS)
    errors.raise_if_any()
    return {"name": name or "", "email": email or ""}


def user_patch(obj: dict[str, Any]) -> dict[str, str]:
    errors = _Errors()
    changes = {}
    for field, pattern, limit in (
        ("name", None, MAX_NAME_CHARS),
        ("email", EMAIL_RE, MAX_EMAIL_CHARS),
    ):
        value = _text(errors, obj, field, pattern, limit, required=False)
        if value is not None:
            changes[field] = value
    if not changes and not errors.items:
        errors.add("name", "give at least one of name, email")
    errors.raise_if_any()
    return changes


def new_product(obj: dict[str, Any]) -> dict[str, Any]:
    errors = _Errors()
    sku = _text(errors, obj, "sku", SKU_RE, 64)
    name = _text(errors, obj, "name", None, MAX_NAME_CHARS)
    price = _int(errors, obj, "price", "price", 0, MAX_PRICE_CENTS)
    stock = _int(errors, obj, "stock", "stock", 0, MAX_STOCK)
    errors.raise_if_any()
    return {"sku": sku, "name": name, "price": price, "stock": stock}


def stock_update(obj: dict[str, Any]) -> int:
    errors = _Errors()
    stock = _int(errors, obj, "stock", "stock", 0, MAX_STOCK)
    errors.raise_if_any()
    assert stock is not None
    return stock


def path_id(text: str, what: str) -> int:
    """An id from the path; anything that cannot be an id is simply not found."""
    if not ID_RE.fullmatch(text):
        raise ProblemError(404, f"{what} not found", f"no {what} with id {text!r}")
    return int(text)


def path_sku(text: str) -> str:
    if not SKU_RE.fullmatch(text):
        raise ProblemError(404, "Product not found", f"no product with sku {text!r}")
    return text


def idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY_RE.fullmatch(value):
        raise ProblemError(
            400,
            "Bad Idempotency-Key",
            f"1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters, no spaces",
        )
    return value


def page_limit(text: str | None, default: int, maximum: int) -> int:
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,6}", text) or not 1 <= int(text) <= maximum:
        raise ProblemError(400, "Bad limit", f"limit must be an integer from 1 to {maximum}")
    return int(text)
