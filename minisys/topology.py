"""What the launcher runs: the components of the stack, their ports and command lines.

The default topology is the one drawn in the README:

    component   port(s)           count  probe            data
    kvcache     6380              1      RESP PING        memory only
    minidb      6381              1      RESP PING        <data-dir>/minidb/
    mq          11301             1      beanstalkd stats <data-dir>/mq/
    appserver   8091, 8092        2      GET /healthz     —
    worker      —                 1      (process alive)  <data-dir>/outbox.mbox
    gateway     8081, 8082 (+8071, 8072 admin)  2  GET /healthz  —
    lb          8080 (+8070 admin) 1     TCP connect      —

Components start in this order (stores → app + worker → gateways → lb) and stop in the
reverse order, so that nothing ever starts before what it talks to, and nothing is left
talking to a component that has already gone.

A TOML file (`--config minisys.toml`) may change ports, counts and extra flags:

    [ports]
    lb = 9080
    appserver = [9091, 9092, 9093]   # three appservers
    [flags]
    kvcache = ["--max-memory", "128mb"]

Read next: `launcher.py`, which turns this plan into processes.

Simpler than the real thing: a real deployment describes this in Compose, systemd units or
Kubernetes manifests, with health checks and restart policies; here it is one small table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minisys.config import ConfigError

DEFAULT_PORTS: dict[str, list[int]] = {
    "kvcache": [6380],
    "minidb": [6381],
    "mq": [11301],
    "appserver": [8091, 8092],
    "gateway": [8081, 8082],
    "gateway-admin": [8071, 8072],
    "lb": [8080],
    "lb-admin": [8070],
}

# Start order: each stage only talks to the stages before it.
STAGES = ("kvcache", "minidb", "mq", "appserver", "worker", "gateway", "lb")


@dataclass
class Component:
    """One process the launcher runs (e.g. `appserver-2`)."""

    name: str  # unique: "appserver-2"
    kind: str  # "appserver"
    module: str  # what `python -m` runs
    args: list[str]
    # Listening sockets the launcher binds up front: server name → port.
    listeners: dict[str, int] = field(default_factory=dict)
    probe: str = "tcp"  # resp | beanstalk | http | tcp | process

    @property
    def port(self) -> int | None:
        return self.listeners.get(self.kind)


@dataclass
class Topology:
    data_dir: Path
    components: list[Component]
    host: str = "127.0.0.1"

    def by_kind(self, kind: str) -> list[Component]:
        return [c for c in self.components if c.kind == kind]

    def port_of(self, kind: str, index: int = 0) -> int:
        port = self.by_kind(kind)[index].port
        assert port is not None
        return port


def build(
    data_dir: Path,
    ports: dict[str, list[int]] | None = None,
    flags: dict[str, list[str]] | None = None,
    log_format: str = "human",
) -> Topology:
    """The default topology, with ports and extra flags overridden where given.

    A port of 0 means "let the OS pick": the launcher binds it and passes the socket on.
    """
    p = {**DEFAULT_PORTS, **(ports or {})}
    flags = flags or {}
    _check_counts(p)
    host = "127.0.0.1"
    kv, db, q = p["kvcache"][0], p["minidb"][0], p["mq"][0]
    common = ["--log-format", log_format]
    cache_url, db_url, queue_url = (
        f"redis://{host}:{kv}",
        f"redis://{host}:{db}",
        f"beanstalk://{host}:{q}",
    )
    comps: list[Component] = [
        Component("kvcache", "kvcache", "kvcache", [*common], {"kvcache": kv}, "resp"),
        Component(
            "minidb",
            "minidb",
            "minidb",
            [*common, "--data-dir", str(data_dir / "minidb"), "--fsync", "always"],
            {"minidb": db},
            "resp",
        ),
        Component(
            "mq",
            "mq",
            "mq",
            [*common, "--data-dir", str(data_dir / "mq"), "--fsync", "always"],
            {"mq": q},
            "beanstalk",
        ),
    ]
    store_args = ["--cache", cache_url, "--db", db_url, "--queue", queue_url]
    for i, port in enumerate(p["appserver"], 1):
        comps.append(
            Component(
                f"appserver-{i}",
                "appserver",
                "appserver",
                [*common, *store_args],
                {"appserver": port},
                "http",
            )
        )
    comps.append(
        Component(
            "worker",
            "worker",
            "appserver.worker",
            [
                *common,
                "--queue",
                queue_url,
                "--outbox",
                str(data_dir / "outbox.mbox"),
            ],
            {},
            "process",
        )
    )
    upstreams = [arg for port in p["appserver"] for arg in ("--upstream", f"{host}:{port}")]
    for i, (port, admin) in enumerate(zip(p["gateway"], p["gateway-admin"], strict=True), 1):
        comps.append(
            Component(
                f"gateway-{i}",
                "gateway",
                "gateway",
                [*common, *upstreams, "--cache", cache_url],
                {"gateway": port, "gateway-admin": admin},
                "http",
            )
        )
    backends = [arg for port in p["gateway"] for arg in ("--backend", f"{host}:{port}")]
    comps.append(
        Component(
            "lb",
            "lb",
            "lb",
            [*common, *backends, "--health", "http:/healthz", "--send-proxy"],
            {"lb": p["lb"][0], "lb-admin": p["lb-admin"][0]},
            "tcp",
        )
    )
    for comp in comps:
        comp.args.extend(flags.get(comp.kind, []))
    return Topology(data_dir=data_dir, components=comps, host=host)


def _check_counts(ports: dict[str, list[int]]) -> None:
    for kind in ("kvcache", "minidb", "mq", "lb", "lb-admin"):
        if len(ports[kind]) != 1:
            raise ConfigError(f"ports.{kind}: exactly one port, got {ports[kind]}")
    if not ports["appserver"]:
        raise ConfigError("ports.appserver: at least one port")
    if not ports["gateway"]:
        raise ConfigError("ports.gateway: at least one port")
    if len(ports["gateway-admin"]) != len(ports["gateway"]):
        raise ConfigError("ports.gateway-admin: one admin port per gateway port")
    for kind, values in ports.items():
        for port in values:
            if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
                raise ConfigError(f"ports.{kind}: {port!r} is not a port number")


def from_toml(data: dict[str, Any]) -> tuple[dict[str, list[int]], dict[str, list[str]]]:
    """Read the [ports] and [flags] tables of a minisys.toml, checking every key."""
    unknown = set(data) - {"ports", "flags"}
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown table (expected ports, flags)")
    ports: dict[str, list[int]] = {}
    for kind, value in data.get("ports", {}).items():
        if kind not in DEFAULT_PORTS:
            raise ConfigError(f"ports.{kind}: unknown component ({', '.join(DEFAULT_PORTS)})")
        ports[kind] = value if isinstance(value, list) else [value]
    flags: dict[str, list[str]] = {}
    for kind, value in data.get("flags", {}).items():
        if kind not in STAGES:
            raise ConfigError(f"flags.{kind}: unknown component ({', '.join(STAGES)})")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"flags.{kind}: expected an array of strings")
        flags[kind] = value
    _check_counts({**DEFAULT_PORTS, **ports})
    return ports, flags
