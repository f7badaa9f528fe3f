"""`redis://[user[:password]@]host[:port][/db]` URLs, as redis-py and redis-cli -u read them.

On the request's journey this is how an appserver or gateway is told where kvcache and
minidb live (`--cache redis://127.0.0.1:6380/0`), and what `RespPool` is built from.

Simpler than the real thing: no `rediss://` (TLS) or `unix://` sockets; query parameters
other than `db` are rejected instead of ignored, so typos are noticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

# Redis's well-known port, used when a URL names none (our stores use 6380/6381).
DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisURL:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_redis_url(url: str) -> RedisURL:
    """Parse a redis:// URL; raise ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"not a redis:// URL (scheme {parts.scheme!r}): {url!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    db = 0
    path = parts.path.strip("/")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"db"}
    if unknown:
        raise ValueError(f"unsupported URL parameter(s) {sorted(unknown)} in {url!r}")
    raw_db = path or (query["db"][0] if "db" in query else "0")
    if not raw_db.isdigit():
        raise ValueError(f"database must be a number, not {raw_db!r}, in {url!r}")
    db = int(raw_db)
    return RedisURL(
        host=parts.hostname or "127.0.0.1",
        port=port,
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )
