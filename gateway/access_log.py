"""The access log: one line per request, written when the response is ready.

On the request's journey this is the very end inside the gateway: proxy.py fills an
`AccessRecord` as the request moves along (route, consumer, upstream member, retries) and
hands it here with the final status. With `--log-format json` the record's fields become
JSON keys (the minisys JsonFormatter merges `extra={"fields": …}`), ready for a log
collector; in human format it is one short line:

    2026-11-29T20:41:07.123Z INFO  gateway [5f0c…] GET /orders 201 57B 3.2ms
        route=shop consumer=demo upstream=127.0.0.1:8091 attempts=1 reason=-

The `reason` column is a termination reason in the spirit of HAProxy's termination state:
`-` for a normal answer, else what ended the request early — `no_route`, `auth`,
`forbidden`, `rate_limited`, `concurrency`, `circuit_open`, `connect`, `connect_timeout`,
`reset`, `timeout`, `bad_request`.

Simpler than the real thing: HAProxy splits the timings five ways (Tq/Tw/Tc/Tr/Tt) and
nginx's log format is configurable; we log total and upstream time with a fixed field set.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

log = logging.getLogger("gateway.access")


@dataclass(slots=True)
class AccessRecord:
    request_id: str = ""
    client: str = ""
    method: str = ""
    path: str = ""
    status: int = 0
    bytes: int = 0
    route: str = "-"
    consumer: str = "-"
    upstream: str = "-"
    attempts: int = 0
    upstream_ms: float = 0.0
    total_ms: float = 0.0
    reason: str = "-"


def write(record: AccessRecord) -> None:
    """Log one request (at INFO, on the `gateway.access` logger)."""
    if not log.isEnabledFor(logging.INFO):
        return
    log.info(
        "%s %s %d %dB %.1fms route=%s consumer=%s upstream=%s attempts=%d reason=%s",
        record.method,
        record.path,
        record.status,
        record.bytes,
        record.total_ms,
        record.route,
        record.consumer,
        record.upstream,
        record.attempts,
        record.reason,
        extra={"fields": asdict(record), "request_id": record.request_id},
    )
