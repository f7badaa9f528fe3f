"""The gateway's configuration: routes, upstream pools, consumers and limits, from TOML.

On the request's journey this is the rulebook every other module reads: routes.py gets its
`Route` rows from here, auth.py its `Consumer`s, upstream.py its pools, ratelimit.py its
limits. `__main__.py` loads it at start and again on SIGHUP; a file that fails validation
is reported (naming the bad key) and the old configuration keeps serving.

Two passes: `minisys.config.from_mapping` checks shape and types against the dataclasses
below (unknown key → "routes[1].pth: unknown key …"); `build()` then checks meaning —
a route's upstream exists, members look like host:port, an API key belongs to one consumer,
a shared limit has a store — and turns settings into the objects the gateway runs on.

A tiny example (the built-in demo is `DEMO_TOML` at the bottom):

    [upstreams.shop]
    members = ["127.0.0.1:8091", "127.0.0.1:8092"]

    [[routes]]
    name = "shop"
    path = "/"
    upstream = "shop"
    auth = true

    [consumers.demo]
    keys = ["minisys-demo-key"]
    limit = { quota = 5, window = 10 }

Simpler than the real thing: Kong keeps this in a database with an admin API to edit it;
we read one file and reload it whole.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from minisys.config import ConfigError, from_mapping, load_toml, parse_size

from .auth import Consumer
from .breaker import BreakerSettings
from .ratelimit import Limit
from .routes import Route, normalize_path

_METHOD = re.compile(r"[A-Z]{1,20}")
_MEMBER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")

# Upstream timeouts above an hour are surely a typo (minutes meant as seconds × 60?).
MAX_TIMEOUT_S = 3600.0
# A route may retry at most this often: every retry multiplies load on a sick upstream.
MAX_RETRIES = 5


@dataclass
class LimitSettings:
    quota: int  # tokens per window
    window: float = 1.0  # seconds
    burst: int | None = None  # bucket size; defaults to quota
    policy: Literal["local", "shared"] = "local"


@dataclass
class UpstreamSettings:
    members: list[str]
    connect_timeout: float = 1.0
    read_timeout: float = 10.0
    total_timeout: float = 15.0
    retries: int = 2
    pool_size: int = 64  # connections open at once per member (more requests wait)
    breaker_failures: int = 5
    breaker_cooldown: float = 10.0
    health_path: str = ""  # "" = no active health check, passive only
    health_interval: float = 5.0


@dataclass
class RouteSettings:
    name: str
    path: str
    upstream: str
    host: str = ""
    methods: list[str] = field(default_factory=list)
    strip_prefix: bool = False
    auth: bool = False
    consumers: list[str] = field(default_factory=list)
    limit: LimitSettings | None = None
    client_limit: LimitSettings | None = None


@dataclass
class ConsumerSettings:
    keys: list[str] = field(default_factory=list)
    jwt_issuer: str = ""
    jwt_secret: str = ""
    limit: LimitSettings | None = None
    max_concurrency: int = 0


@dataclass
class GatewaySettings:
    # Peers allowed to send a PROXY v1 line (the lb); from anyone else it is a 400.
    trusted_proxies: list[str] = field(default_factory=list)
    max_body: str | int = "1mb"
    max_header: str | int = "16kb"
    via: str = "minisys-gateway"
    access_log: bool = True


@dataclass
class RateLimitSettings:
    store: str = ""  # redis://host:port/db of kvcache, for `shared` limits
    on_store_error: Literal["open", "closed"] = "open"
    store_timeout: float = 0.05  # seconds; a slow store must not slow every request


@dataclass
class FileSettings:
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    upstreams: dict[str, UpstreamSettings] = field(default_factory=dict)
    routes: list[RouteSettings] = field(default_factory=list)
    consumers: dict[str, ConsumerSettings] = field(default_factory=dict)


@dataclass
class Upstream:
    """A pool's settings in runnable form (members as (host, port))."""

    name: str
    members: list[tuple[str, int]]
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    retries: int
    pool_size: int
    breaker: BreakerSettings
    health_path: str
    health_interval: float


@dataclass
class GatewayConfig:
    """Everything the running gateway needs, validated."""

    routes: list[Route]
    upstreams: dict[str, Upstream]
    consumers: list[Consumer]
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    max_body: int
    max_header: int
    via: str
    access_log: bool
    store: str
    fail_open: bool
    store_timeout: float
    source: str = "<built-in demo>"


def _limit(raw: LimitSettings | None, where: str) -> Limit | None:
    if raw is None:
        return None
    if raw.quota <= 0:
        raise ConfigError(f"{where}.quota: must be a positive integer")
    if raw.window <= 0:
        raise ConfigError(f"{where}.window: must be a positive number of seconds")
    burst = raw.quota if raw.burst is None else raw.burst
    if burst <= 0:
        raise ConfigError(f"{where}.burst: must be a positive integer")
    return Limit(raw.quota, raw.window, burst, raw.policy)


def _positive(value: float, where: str) -> None:
    if not 0 < value <= MAX_TIMEOUT_S:
        raise ConfigError(f"{where}: must be > 0 and ≤ {MAX_TIMEOUT_S:g} seconds")


def _member(text: str, where: str) -> tuple[str, int]:
    match = _MEMBER.fullmatch(text)
    if not match or not 0 < int(match.group(2)) <= 65535:
        raise ConfigError(f"{where}: {text!r} is not host:port")
    return match.group(1).strip("[]"), int(match.group(2))


def _upstream(name: str, raw: UpstreamSettings) -> Upstream:
    where = f"upstreams.{name}"
    if not raw.members:
        raise ConfigError(f"{where}.members: needs at least one host:port")
    members = [_member(m, f"{where}.members[{i}]") for i, m in enumerate(raw.members)]
    for key in ("connect_timeout", "read_timeout", "total_timeout", "breaker_cooldown"):
        _positive(getattr(raw, key), f"{where}.{key}")
    if not 0 <= raw.retries <= MAX_RETRIES:
        raise ConfigError(f"{where}.retries: must be between 0 and {MAX_RETRIES}")
    if raw.pool_size < 0:
        raise ConfigError(f"{where}.pool_size: must not be negative")
    if raw.breaker_failures < 1:
        raise ConfigError(f"{where}.breaker_failures: must be at least 1")
    if raw.health_path and not raw.health_path.startswith("/"):
        raise ConfigError(f"{where}.health_path: must start with /")
    if raw.health_path:
        _positive(raw.health_interval, f"{where}.health_interval")
    return Upstream(
        name,
        members,
        raw.connect_timeout,
        raw.read_timeout,
        raw.total_timeout,
        raw.retries,
        raw.pool_size,
        BreakerSettings(raw.breaker_failures, raw.breaker_cooldown),
        raw.health_path,
        raw.health_interval,
    )


def _route(
    i: int, raw: RouteSettings, upstreams: dict[str, Upstream], consumers: set[str]
) -> Route:
    where = f"routes[{i}]"
    if raw.upstream not in upstreams:
        known = ", ".join(sorted(upstreams)) or "none defined"
        raise ConfigError(f"{where}.upstream: unknown upstream {raw.upstream!r} (known: {known})")
    try:
        path = normalize_path(raw.path)
    except ValueError as exc:
        raise ConfigError(f"{where}.path: {exc}") from None
    if path != "/":
        path = path.rstrip("/")
    for j, method in enumerate(raw.methods):
        if not _METHOD.fullmatch(method):
            raise ConfigError(f"{where}.methods[{j}]: {method!r} is not an upper-case method")
    for j, consumer in enumerate(raw.consumers):
        if consumer not in consumers:
            raise ConfigError(f"{where}.consumers[{j}]: unknown consumer {consumer!r}")
    if raw.consumers and not raw.auth:
        raise ConfigError(f"{where}.consumers: only meaningful with auth = true")
    client_limit = _limit(raw.client_limit, f"{where}.client_limit")
    return Route(
        name=raw.name,
        path=path,
        upstream=raw.upstream,
        host=raw.host.lower() or None,
        methods=frozenset(raw.methods) or None,
        strip_prefix=raw.strip_prefix,
        auth=raw.auth,
        consumers=frozenset(raw.consumers) or None,
        limit=_limit(raw.limit, f"{where}.limit"),
        client_limit=client_limit,
    )


def build(data: dict[str, Any], source: str = "<memory>") -> GatewayConfig:
    """Validate a parsed TOML document and build the runnable configuration."""
    raw = from_mapping(FileSettings, data)
    upstreams = {name: _upstream(name, u) for name, u in raw.upstreams.items()}
    consumers: list[Consumer] = []
    owners: dict[str, str] = {}
    for cid, c in raw.consumers.items():
        where = f"consumers.{cid}"
        for j, key in enumerate(c.keys):
            if len(key) < 8:
                raise ConfigError(f"{where}.keys[{j}]: API keys must be at least 8 characters")
            if key in owners:
                raise ConfigError(f"{where}.keys[{j}]: key already belongs to {owners[key]!r}")
            owners[key] = cid
        if bool(c.jwt_issuer) != bool(c.jwt_secret):
            raise ConfigError(f"{where}.jwt_secret: jwt_issuer and jwt_secret go together")
        if c.max_concurrency < 0:
            raise ConfigError(f"{where}.max_concurrency: must not be negative")
        consumers.append(
            Consumer(
                id=cid,
                keys=tuple(c.keys),
                jwt_issuer=c.jwt_issuer or None,
                jwt_secret=c.jwt_secret or None,
                limit=_limit(c.limit, f"{where}.limit"),
                max_concurrency=c.max_concurrency,
            )
        )
    issuers = [c.jwt_issuer for c in consumers if c.jwt_issuer]
    if len(issuers) != len(set(issuers)):
        raise ConfigError("consumers: two consumers share a jwt_issuer")
    names = {c.id for c in consumers}
    routes = [_route(i, r, upstreams, names) for i, r in enumerate(raw.routes)]
    seen: set[str] = set()
    for i, route in enumerate(routes):
        if route.name in seen:
            raise ConfigError(f"routes[{i}].name: duplicate route name {route.name!r}")
        seen.add(route.name)
    trusted = []
    for i, text in enumerate(raw.gateway.trusted_proxies):
        try:
            trusted.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(f"gateway.trusted_proxies[{i}]: {text!r} is not an address") from None
    sizes = {}
    for key in ("max_body", "max_header"):
        try:
            sizes[key] = parse_size(getattr(raw.gateway, key))
        except ConfigError as exc:
            raise ConfigError(f"gateway.{key}: {exc}") from None
    limits = [r.limit for r in routes] + [r.client_limit for r in routes]
    limits += [c.limit for c in consumers]
    if (
        any(lim is not None and lim.policy == "shared" for lim in limits)
        and not raw.ratelimit.store
    ):
        raise ConfigError("ratelimit.store: a shared limit needs the kvcache URL (redis://…)")
    _positive(raw.ratelimit.store_timeout, "ratelimit.store_timeout")
    return GatewayConfig(
        routes=routes,
        upstreams=upstreams,
        consumers=consumers,
        trusted_proxies=trusted,
        max_body=sizes["max_body"],
        max_header=sizes["max_header"],
        via=raw.gateway.via,
        access_log=raw.gateway.access_log,
        store=raw.ratelimit.store,
        fail_open=raw.ratelimit.on_store_error == "open",
        store_timeout=raw.ratelimit.store_timeout,
        source=source,
    )


def load(path: str | Path) -> GatewayConfig:
    """Read and validate a TOML file; raises ConfigError naming the file and the key."""
    try:
        return build(load_toml(path), source=str(path))
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(str(path)) else f"{path}: {text}") from None


def demo() -> GatewayConfig:
    """The built-in configuration used when no --config is given."""
    import tomllib

    return build(tomllib.loads(DEMO_TOML), source="<built-in demo>")


DEMO_TOML = """
# The shop behind two appservers. Reading the catalogue is public (20 requests per second
# per client address); everything else needs a key. `demo` may make 5 requests per 10 s
# (try the 6th: 429); `bench` a million per second, so load tests never hit the limit.
[gateway]
trusted_proxies = ["127.0.0.1"]

[upstreams.shop]
members = ["127.0.0.1:8091", "127.0.0.1:8092"]
health_path = "/healthz"

[[routes]]
name = "catalogue"
path = "/products"
methods = ["GET", "HEAD"]
upstream = "shop"
client_limit = { quota = 20, window = 1 }

[[routes]]
name = "shop"
path = "/"
upstream = "shop"
auth = true

[consumers.demo]
keys = ["minisys-demo-key"]
jwt_issuer = "minisys-demo"
jwt_secret = "minisys-demo-secret"
limit = { quota = 5, window = 10 }

[consumers.bench]
keys = ["minisys-bench-key"]
limit = { quota = 1000000, window = 1 }
"""
