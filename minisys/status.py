"""`python -m minisys status`: one line per component of a running stack.

    component    state  pid     port   numbers
    kvcache      up     41200   6380   keys=8 hit_ratio=0.83 evicted=0
    minidb       up     41201   6381   keys=15 data_bytes=2210 dead_bytes=340
    mq           up     41202   11301  ready=0 reserved=0 delayed=0 buried=0
    appserver-1  up     41203   8091   req/s=12.0
    ...

It reads `<data-dir>/minisys.json` (written by the launcher) to learn what runs where, asks
each component in its own protocol (RESP `INFO`, beanstalkd `stats`, HTTP `/metrics`), and
samples request counters twice, one second apart, for a rate.

Exit code: 0 when every component is up, 1 otherwise (so scripts can wait on it).

Simpler than the real thing: no history and no dashboards; Prometheus could scrape the same
`/metrics` endpoints and keep both.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from minisys.beanstalk.client import BeanstalkClient
from minisys.http.client import HttpClient
from minisys.metrics import parse_text
from minisys.probes import probe
from minisys.resp.client import RespClient

# Each question to a component gets this long; a slow answer is shown as "?".
QUERY_TIMEOUT = 3.0
# Request rates are the difference of two /metrics samples this far apart.
RATE_WINDOW = 1.0


def read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / "minisys.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def parse_info(text: str) -> dict[str, str]:
    """Redis INFO text ("field:value" lines, "# Section" headers) → a flat dict."""
    fields = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            name, _, value = line.partition(":")
            fields[name] = value
    return fields


async def resp_numbers(host: str, port: int, kind: str) -> str:
    client = await RespClient.connect(host, port, read_timeout=QUERY_TIMEOUT)
    try:
        info = parse_info((await client.execute("INFO")).decode())
        keys = await client.execute("DBSIZE")
    finally:
        await client.close()
    if kind == "kvcache":
        hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
        ratio = f"{hits / (hits + misses):.2f}" if hits + misses else "-"
        return f"keys={keys} hits={hits} misses={misses} hit_ratio={ratio} " + (
            f"evicted={info.get('evicted_keys', '?')}"
        )
    return (
        f"keys={keys} data_bytes={info.get('minidb_data_bytes', '?')} "
        f"dead_bytes={info.get('minidb_dead_bytes', '?')} files={info.get('minidb_files', '?')}"
    )


async def mq_numbers(host: str, port: int) -> str:
    client = await BeanstalkClient.connect(host, port)
    try:
        stats = await asyncio.wait_for(client.stats(), QUERY_TIMEOUT)
    finally:
        await client.close()
    return " ".join(
        f"{word}={stats.get(f'current-jobs-{word}', '?')}"
        for word in ("ready", "reserved", "delayed", "buried")
    )


def metric_total(metrics_text: str, name: str) -> float:
    """The sum of one metric over all its label sets."""
    return sum(v for (n, _), v in parse_text(metrics_text).items() if n == name)


async def http_rate(http: HttpClient, host: str, port: int, metric: str, unit: str) -> str:
    url = f"http://{host}:{port}/metrics"
    first = metric_total((await http.get(url)).text(), metric)
    await asyncio.sleep(RATE_WINDOW)
    second = metric_total((await http.get(url)).text(), metric)
    # An appserver counts our own /metrics request; do not report it as traffic.
    own = 1 if metric == "http_requests_total" else 0
    rate = max(0.0, (second - first - own) / RATE_WINDOW)
    return f"{unit}={int(second)} {unit}/s={rate:.1f}"


# Where each HTTP-speaking component keeps its traffic counter: (listener, metric, unit).
TRAFFIC = {
    "appserver": ("appserver", "http_requests_total", "requests"),
    "gateway": ("gateway-admin", "gateway_requests_total", "requests"),
    "lb": ("lb-admin", "lb_connections_accepted_total", "connections"),
}


async def component_line(http: HttpClient, host: str, comp: dict[str, Any]) -> tuple[bool, str]:
    kind, listeners, pid = comp["kind"], comp["listeners"], comp["pid"]
    port = listeners.get(kind)
    if comp["probe"] == "process":
        up = pid is not None and _alive(pid)
    else:
        up = await probe(comp["probe"], host, port)
    numbers = ""
    if up:
        try:
            if kind in ("kvcache", "minidb"):
                numbers = await resp_numbers(host, port, kind)
            elif kind == "mq":
                numbers = await mq_numbers(host, port)
            elif kind in TRAFFIC:
                listener, metric, unit = TRAFFIC[kind]
                numbers = await http_rate(http, host, listeners[listener], metric, unit)
        except (OSError, TimeoutError, ValueError) as exc:
            numbers = f"? ({type(exc).__name__})"
    state = "up" if up else "DOWN"
    restarts = f" restarts={comp['restarts']}" if comp.get("restarts") else ""
    line = f"{comp['name']:<12} {state:<5} {pid or '-':<7} {port or '-':<6} {numbers}{restarts}"
    return up, line


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def status(data_dir: Path) -> int:
    state = read_state(data_dir)
    if state is None:
        print(f"minisys is not running with data dir {data_dir} (no {data_dir}/minisys.json)")
        return 1
    print(f"{'component':<12} {'state':<5} {'pid':<7} {'port':<6} numbers")
    async with HttpClient(read_timeout=QUERY_TIMEOUT, total_timeout=QUERY_TIMEOUT) as http:
        results = await asyncio.gather(
            *(component_line(http, state["host"], comp) for comp in state["components"])
        )
    for _, line in results:
        print(line)
    return 0 if all(up for up, _ in results) else 1
