"""The INFO command's text: sections of `key:value` lines that each layer fills in.

On the request's journey INFO is how a learner (or redis-py's `r.info()`) looks inside a
running kvcache or minidb: hits and misses, keys per database, memory. The engine owns the
sections every server has (server, clients, stats, replication, cpu) and a layer adds or
replaces sections (memory, persistence, keyspace) with a function returning key/values:

    engine.info.add("keyspace", lambda: {"db0": f"keys={len(cache)},expires=0,avg_ttl=0"})

The text looks like Redis's, which is what parsers such as redis-py's expect:

    # Server\\r\\nredis_version:7.0.15\\r\\n…\\r\\n\\r\\n# Clients\\r\\nconnected_clients:1\\r\\n

Simpler than the real thing: far fewer fields; "default", "all" and "everything" all
mean every section.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minisys.resp.engine import Engine

# What we tell clients we are: they gate features on the version, and we copy 7.0's rules.
REDIS_VERSION = "7.0.15"

Fields = dict[str, object] | list[tuple[str, object]]

_ALL = {"default", "all", "everything"}


class InfoSections:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sections: dict[str, tuple[str, Callable[[], Fields]]] = {}
        self.add("server", self._server)
        self.add("clients", self._clients)
        self.add("memory", self._memory)
        self.add("persistence", lambda: {"loading": 0, "aof_enabled": 0})
        self.add("stats", self._stats)
        self.add("replication", lambda: {"role": "master", "connected_slaves": 0})
        self.add("cpu", self._cpu, title="CPU")
        self.add("keyspace", dict)

    def add(self, name: str, fields: Callable[[], Fields], *, title: str | None = None) -> None:
        """Add or replace a section; a replaced section keeps its place in the output."""
        self._sections[name.lower()] = (title or name.capitalize(), fields)

    def render(self, wanted: list[bytes]) -> str:
        names = [w.decode("utf-8", "replace").lower() for w in wanted] or ["default"]
        chosen = [name for name in self._sections if name in names or _ALL.intersection(names)]
        blocks = []
        for name in chosen:
            title, fields = self._sections[name]
            items = fields()
            pairs = items.items() if isinstance(items, dict) else items
            lines = [f"# {title}"] + [f"{key}:{value}" for key, value in pairs]
            blocks.append("\r\n".join(lines) + "\r\n")
        return "\r\n".join(blocks)

    def _server(self) -> Fields:
        engine = self.engine
        uptime = int(engine.clock() - engine.started_at)
        return {
            "redis_version": REDIS_VERSION,
            "redis_mode": "standalone",
            "minisys_component": engine.component,
            "os": f"{platform.system()} {platform.release()} {platform.machine()}",
            "arch_bits": 64 if sys.maxsize > 2**32 else 32,
            "multiplexing_api": "asyncio",
            "python_version": platform.python_version(),
            "process_id": os.getpid(),
            "tcp_port": engine.tcp_port,
            "uptime_in_seconds": uptime,
            "uptime_in_days": uptime // 86400,
        }

    def _clients(self) -> Fields:
        return {"connected_clients": len(self.engine.sessions), "blocked_clients": 0}

    def _memory(self) -> Fields:
        rss = 0
        try:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
        return {"used_memory_rss": rss, "maxmemory": 0, "maxmemory_policy": "noeviction"}

    def _stats(self) -> Fields:
        engine = self.engine
        return {
            "total_connections_received": engine.total_connections,
            "total_commands_processed": engine.total_commands,
        }

    def _cpu(self) -> Fields:
        times = os.times()
        return {"used_cpu_sys": f"{times.system:.6f}", "used_cpu_user": f"{times.user:.6f}"}
