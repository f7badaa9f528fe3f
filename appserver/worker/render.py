"""From an e-mail job (JSON from the `emails` tube) to an RFC 5322 message.

The appserver puts everything the e-mail needs into the job, so the worker never reads
the database: a job is self-contained and can be rendered the same way on every
redelivery (the Date comes from the order, not from the worker's clock, so a retried
job renders byte for byte the same message).

    From: minisys shop <shop@minisys.local>
    To: Ada Lovelace <ada@example.com>
    Subject: Your order #17
    Date: Sun, 29 Nov 2026 20:41:07 +0000
    Message-ID: <order-17@minisys.local>
    X-Request-ID: 5f0c…                 ← the request that placed the order
    Content-Type: text/plain; charset="utf-8"

    Hello Ada Lovelace,
    …

`Message-ID` is derived from the order id alone: that is what makes delivery idempotent
(`mbox.py` refuses a Message-ID it already holds).

A job that cannot be rendered (not JSON, fields missing, an address the e-mail library
rejects) raises `PoisonJob`: retrying cannot help, so the worker buries it at once.

Read next: `mbox.py`, `runner.py`.

Simpler than the real thing: plain text only, no templates, no MIME alternatives, no
localisation; amounts are formatted as dollars.
"""

from __future__ import annotations

import calendar
import email.policy
import email.utils
import json
import time
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

SENDER = Address("minisys shop", "shop", "minisys.local")
MESSAGE_ID_DOMAIN = "minisys.local"


class PoisonJob(ValueError):
    """A job no retry can fix (malformed): bury it for a human to look at."""


def message_id(order_id: int) -> str:
    return f"<order-{order_id}@{MESSAGE_ID_DOMAIN}>"


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def parse_job(body: bytes) -> dict[str, Any]:
    """The job as a dict, checked for the fields rendering needs."""
    try:
        job = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PoisonJob(f"job body is not JSON: {exc}") from None
    if not isinstance(job, dict):
        raise PoisonJob("job body is not a JSON object")
    for field, kind in (
        ("order_id", int),
        ("to", str),
        ("name", str),
        ("items", list),
        ("total", int),
        ("created_at", str),
    ):
        if not isinstance(job.get(field), kind):
            raise PoisonJob(f"job field {field!r} missing or not {kind.__name__}")
    return job


def render(job: dict[str, Any]) -> EmailMessage:
    """The order-confirmation message for one job."""
    msg = EmailMessage(policy=email.policy.default)
    try:
        local, _, domain = job["to"].rpartition("@")
        if not local or not domain:
            raise ValueError(f"not an e-mail address: {job['to']!r}")
        msg["From"] = SENDER
        msg["To"] = Address(job["name"], local, domain)
        msg["Subject"] = f"Your order #{job['order_id']}"
        created = calendar.timegm(time.strptime(job["created_at"], "%Y-%m-%dT%H:%M:%SZ"))
        msg["Date"] = email.utils.formatdate(created, usegmt=True)
        msg["Message-ID"] = message_id(job["order_id"])
        if job.get("request_id"):
            msg["X-Request-ID"] = str(job["request_id"])
        lines = [
            f"Hello {job['name']},",
            "",
            f"thank you for your order #{job['order_id']} placed {job['created_at']}.",
            "",
        ]
        for item in job["items"]:
            label = f"{item['qty']} x {item['name']} ({item['sku']})"
            lines.append(f"  {label:<44} {_money(item['price'] * item['qty']):>10}")
        lines += [f"  {'total':>44} {_money(job['total']):>10}", "", "-- ", "minisys shop"]
        msg.set_content("\n".join(lines) + "\n")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PoisonJob(f"cannot render job: {exc!r}") from None
    return msg
