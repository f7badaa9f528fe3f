"""Routing: which upstream serves this request, and under which rules?

On the request's journey this is the gateway's first decision (proxy.py calls `match`
before auth and rate limits, because the route says whether auth is required and which
limits apply). A route is a host (optional) plus a path prefix, a set of methods, an
upstream pool name and its policies.

Matching is longest-prefix on whole path segments: the prefix `/api` matches `/api` and
`/api/users` but never `/apix`. A route with a host beats a host-less route of the same
prefix length.

Why normalise first: the upstream will resolve `/users/../admin` to `/admin`. If we matched
the raw text, that request would be checked against the public `/users` route's rules and
then served by the upstream as `/admin` — an auth bypass. So the path is percent-decoded,
dot segments are removed (RFC 3986 §5.2.4) and repeated slashes merged *before* matching,
and what we forward upstream is that same canonical path, re-encoded: the upstream serves
exactly the path we checked. `%2e%2e` is just `..` spelled differently and is treated so;
`%2F` becomes a real `/` (we choose safety over preserving encoded slashes in ids).
A path that is not a valid percent-encoding, or decodes to a NUL or a backslash, is
rejected with 400 rather than guessed at.

Simpler than the real thing: no regex or wildcard routes, no header/query predicates, no
weighted traffic splitting (Envoy, Kong and Traefik all have these).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_to_bytes

# Characters left unescaped when re-encoding a canonical path: RFC 3986 pchar minus "%",
# plus "/" as the separator.
PATH_SAFE = "/:@!$&'()*+,;=-._~"

_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class PathError(ValueError):
    """The path cannot be made canonical (bad percent-encoding, NUL, backslash…)."""


def normalize_path(raw: str) -> str:
    """The canonical, decoded form of a request path (no query string).

    >>> normalize_path("/users/../admin")
    '/admin'
    >>> normalize_path("/a/%2e%2e//b/./c")
    '/b/c'
    """
    if not raw.startswith("/"):
        raise PathError("path must start with /")
    # The fast path: most paths are already canonical and need no work at all.
    if "%" not in raw and "//" not in raw and "/." not in raw and "\\" not in raw:
        return raw
    if _BAD_PERCENT.search(raw):
        raise PathError("bad percent-encoding in path")
    decoded_bytes = unquote_to_bytes(raw)
    if b"\x00" in decoded_bytes or b"\\" in decoded_bytes:
        raise PathError("NUL or backslash in path")
    try:
        decoded = decoded_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise PathError("path is not UTF-8") from None
    out: list[str] = []
    for segment in decoded.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    path = "/" + "/".join(out)
    # Keep a trailing slash: `/docs/` and `/docs` are different resources to many servers.
    trailing = decoded.endswith("/") or decoded.rpartition("/")[2] in (".", "..")
    if trailing and path != "/":
        path += "/"
    return path


_NEEDS_NO_QUOTING = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~]*")


def encode_path(path: str) -> str:
    """Re-encode a canonical path for the request line sent upstream."""
    if _NEEDS_NO_QUOTING.fullmatch(path):  # the common case, and a cheap check
        return path
    return quote(path, safe=PATH_SAFE)


@dataclass
class Route:
    """One row of the route table (see config.py for how TOML becomes this)."""

    name: str
    path: str  # canonical prefix, e.g. "/api"; "/" matches everything
    upstream: str
    host: str | None = None  # lowercase, no port; None matches any host
    methods: frozenset[str] | None = None  # None = every method
    strip_prefix: bool = False
    auth: bool = False
    consumers: frozenset[str] | None = None  # who may use it; None = any authenticated
    limit: Any = None  # ratelimit.Limit for the whole route, all callers together
    client_limit: Any = None  # ratelimit.Limit per client address on anonymous routes
    extra: dict[str, Any] = field(default_factory=dict)

    def matches_path(self, path: str) -> bool:
        prefix = self.path
        if prefix == "/":
            return True
        return path == prefix or (path.startswith(prefix) and path[len(prefix)] == "/")

    def upstream_path(self, path: str) -> str:
        """The path sent upstream: the prefix removed when `strip_prefix` is on."""
        if not self.strip_prefix or self.path == "/":
            return path
        rest = path[len(self.path) :]
        return rest if rest.startswith("/") else "/" + rest


class NoRoute(Exception):
    """No route matches; `allowed` lists methods of routes that match the path (for 405)."""

    def __init__(self, allowed: frozenset[str] | None = None) -> None:
        super().__init__("no route")
        self.allowed = allowed


class RouteTable:
    """Routes ordered most specific first: longer prefix, then host-specific."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: (len(r.path), r.host is not None), reverse=True)

    def match(self, method: str, host: str | None, path: str) -> Route:
        """The route for a canonical `path`; raises NoRoute (404, or 405 with Allow)."""
        host_name = normalize_host(host)
        allowed: set[str] = set()
        for route in self.routes:
            if route.host is not None and route.host != host_name:
                continue
            if not route.matches_path(path):
                continue
            if route.methods is None or method in route.methods:
                return route
            allowed |= route.methods
        raise NoRoute(frozenset(allowed) if allowed else None)


def normalize_host(host: str | None) -> str | None:
    """`Example.COM:8081` → `example.com`; IPv6 literals keep their brackets."""
    if not host:
        return None
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.partition(":")[0]
