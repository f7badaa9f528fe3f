"""Log lines every component writes the same way: human-readable or JSON, with request ids.

A request's id is minted (or kept) by the gateway, travels as `X-Request-ID` to the
appserver, rides inside the job body to the worker, and shows up in every log line written
while that request is being handled. The id lives in a ContextVar, so each asyncio task
sees its own value without passing it through every function.

    human: 2026-11-29T20:41:07.123Z INFO  kvcache  listening on 127.0.0.1:6380
    json:  {"ts": "2026-11-29T20:41:07.123Z", "level": "info", "component": "kvcache",
            "logger": "minisys.server", "msg": "listening on 127.0.0.1:6380"}

The launcher reads the children's stderr and prefixes each line with the component name,
so a component's own lines stay short.

Simpler than the real thing: no log rotation, no sampling, no structured fields beyond the
request id; production stacks ship these lines to a collector instead of a terminal.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class HumanFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None) or request_id.get()
        rid_part = f" [{rid}]" if rid else ""
        line = (
            f"{_timestamp(record)} {record.levelname:<5} {self.component}{rid_part} "
            f"{record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            entry["request_id"] = rid
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(", ", ": "))


def setup_logging(component: str, fmt: str = "human", level: str = "info") -> None:
    """Send this process's logs to stderr in the chosen format."""
    if fmt not in ("human", "json"):
        raise ValueError(f"log format must be 'human' or 'json', not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component) if fmt == "json" else HumanFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
