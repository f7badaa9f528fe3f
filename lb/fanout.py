"""The admin endpoint of an lb with `--workers N`: ask every worker, answer for all of them.

Place on the journey: beside it, like `lb/admin.py`. With several workers
(`lb/workers.py`) each one runs the ordinary admin endpoint on a private port; the master
serves `--admin-port` with this handler, which forwards each request to every worker and
combines the answers, so the operator still sees one lb and one set of routes:

    request                         what the master does
    GET /stats, /backends[/x]       ask every worker; counters are summed, states that
                                    differ between workers are shown as "MIXED", and every
                                    backend carries a per-worker list (status, active, checks)
    GET /metrics                    every worker's samples with a `worker="i"` label
                                    (sum them in PromQL: `sum without (worker) (…)`)
    POST/DELETE (drain, add, …)     sent to every worker; remembered, and replayed to a
                                    worker that replaces a dead one (which serves with
                                    the command-line backends for the few milliseconds
                                    between its READY line and the replay)
    a worker that is restarting     left out; `lb.workers_answering` says how many answered

The combined answer tells the truth only as far as the workers agree: health checks run
in every worker, so for an instant one may see a backend DOWN while another still sees it
UP. That is what "MIXED" and the per-worker lists are for.

Simpler than the real thing: nginx Plus shares upstream state between workers in shared
memory (`zone`), so its API reads one copy; ours asks each process over HTTP.
"""

from __future__ import annotations

import asyncio
import json

from minisys.http.client import ClientError, HttpClient
from minisys.http.message import Request, Response, json_response, problem
from minisys.http.server import http_server
from minisys.metrics import CONTENT_TYPE
from minisys.server import Server, ServerConfig

# A worker that does not answer its admin request within this long is left out.
FANOUT_TIMEOUT = 5.0

# Backend fields that are counters or gauges: the lb-wide value is the workers' sum.
SUMMED = (
    "active", "total", "bytes_in", "bytes_out", "connect_failures", "check_failures",
    "down_transitions", "ejections",
)  # fmt: skip
# Per-worker views of a backend: meaningful only per worker, so listed per worker.
PER_WORKER = ("status", "health", "effective_weight", "active", "max_active", "last_checks")
# lb-wide counters that are maxima rather than sums.
MAXIMA = ("max_queue",)


def merge_backends(snapshots: list[dict]) -> dict:
    """One backend as seen by every worker (a list of its snapshots) → one combined view."""
    merged = {k: v for k, v in snapshots[0].items() if k not in ("max_active", "history")}
    for key in SUMMED:
        merged[key] = sum(s[key] for s in snapshots)
    for key in ("status", "health", "effective_weight", "admin"):
        values = {json.dumps(s[key]) for s in snapshots}
        merged[key] = snapshots[0][key] if len(values) == 1 else "MIXED"
    merged["workers"] = [{k: s[k] for k in PER_WORKER} for s in snapshots]
    return merged


def merge_backend_lists(lists: list[list[dict]]) -> list[dict]:
    """Backends of every worker, merged by name (a name some worker lacks is MIXED)."""
    by_name: dict[str, list[dict]] = {}
    for backends in lists:
        for snapshot in backends:
            by_name.setdefault(snapshot["name"], []).append(snapshot)
    merged = []
    for snapshots in by_name.values():
        view = merge_backends(snapshots)
        if len(snapshots) != len(lists):
            view["status"] = "MIXED"  # added or removed in some workers only
        merged.append(view)
    return merged


def merge_stats(replies: list[dict], pids: list[int]) -> dict:
    """Every worker's /stats → the lb's: sums (maxima where noted), plus each worker's own."""
    lb: dict = {}
    for reply in replies:
        for key, value in reply["lb"].items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                lb.setdefault(key, value)
            elif key in MAXIMA:
                lb[key] = max(lb.get(key, value), value)
            else:
                lb[key] = lb.get(key, 0) + value
    lb["workers"] = [{"pid": pid, **reply["lb"]} for pid, reply in zip(pids, replies, strict=True)]
    return {"lb": lb, "backends": merge_backend_lists([r["backends"] for r in replies])}


def merge_metrics(texts: list[str]) -> str:
    """Prometheus text of every worker → one exposition, samples labelled by worker."""
    families: dict[str, list[str]] = {}  # family name → HELP/TYPE lines, then samples
    headers_seen: set[str] = set()
    for index, text in enumerate(texts):
        family = ""
        for line in text.splitlines():
            if line.startswith("#"):
                parts = line.split(" ", 3)
                family = parts[2] if len(parts) > 2 else family
                lines = families.setdefault(family, [])
                if line not in headers_seen:
                    headers_seen.add(line)
                    lines.append(line)
            elif line:
                name, brace, rest = line.partition("{")
                if brace:
                    labelled = f'{name}{{worker="{index}",{rest}'
                else:
                    name, _, value = line.partition(" ")
                    labelled = f'{name}{{worker="{index}"}} {value}'
                families.setdefault(family or name, []).append(labelled)
    return "".join(line + "\n" for lines in families.values() for line in lines)


class FanoutAdmin:
    """The master's admin handler: forwards to the workers of a `Supervisor`."""

    def __init__(self, supervisor) -> None:
        self.supervisor = supervisor
        self.client = HttpClient(connect_timeout=FANOUT_TIMEOUT, total_timeout=FANOUT_TIMEOUT)
        # The admin changes made so far, replayed to a replacement worker in this order:
        # removals of command-line backends, additions, then drain/enable/disable.
        self.removed: dict[str, None] = {}
        self.added: dict[str, bytes] = {}
        self.actions: dict[str, str] = {}
        supervisor.on_replaced = self.replay

    async def _ask(self, workers: list, method: str, path: str, body: bytes = b"") -> list:
        async def one(worker):
            url = ("127.0.0.1", worker.admin_port, path)
            try:
                return await self.client.request(method, url, body=body)
            except ClientError:
                return None

        replies = await asyncio.gather(*(one(w) for w in workers))
        return [(w, r) for w, r in zip(workers, replies, strict=True) if r is not None]

    async def __call__(self, request: Request) -> Response:
        workers = self.supervisor.ready_workers()
        target = request.path + (f"?{request.query}" if request.query else "")
        answers = await self._ask(workers, request.method, target, request.body)
        if not answers:
            return problem(503, detail="no lb worker answered")
        if request.method in ("GET", "HEAD"):
            return self._combine(request.path, answers)
        if len({r.status for _, r in answers}) > 1:
            detail = ", ".join(f"worker {w.index}: {r.status}" for w, r in answers)
            return problem(502, detail=f"the workers disagree: {detail}")
        first = answers[0][1]
        if first.status >= 300:
            return _relay(first)
        # Remembered even if a worker did not answer: it is being replaced, and the
        # replacement gets every remembered change before it is asked anything else.
        self._remember(request)
        snapshots = [r.json() for _, r in answers]
        return json_response(merge_backends(snapshots), status=first.status)

    def _combine(self, path: str, answers: list) -> Response:
        first = answers[0][1]
        if any(r.status != 200 for _, r in answers):
            return _relay(next(r for _, r in answers if r.status != 200))
        parts = [p for p in path.split("/") if p]
        if parts == ["metrics"]:
            text = merge_metrics([r.text() for _, r in answers])
            return Response(200, [("Content-Type", CONTENT_TYPE)], text.encode())
        if parts in (["stats"], []):
            pids = [w.proc.pid for w, _ in answers]
            stats = merge_stats([r.json() for _, r in answers], pids)
            stats["lb"]["workers_answering"] = len(answers)
            stats["lb"]["worker_restarts"] = self.supervisor.restarts
            return json_response(stats)
        if parts == ["backends"]:
            return json_response(merge_backend_lists([r.json() for _, r in answers]))
        if len(parts) == 2 and parts[0] == "backends":
            return json_response(merge_backends([r.json() for _, r in answers]))
        return _relay(first)  # /healthz and anything else the workers agree on

    def _remember(self, request: Request) -> None:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["backends"] and request.method == "POST":
            name = json.loads(request.body)["address"]
            self.added[_canonical(name)] = request.body
        elif len(parts) == 2 and request.method == "DELETE":
            self.actions.pop(parts[1], None)
            if self.added.pop(parts[1], None) is None:
                self.removed[parts[1]] = None
        elif len(parts) == 3:
            self.actions.pop(parts[1], None)  # keep the latest, in order
            self.actions[parts[1]] = parts[2]

    async def replay(self, worker) -> None:
        """Bring a replacement worker to the state the admin left the others in."""
        for name in self.removed:
            await self._ask([worker], "DELETE", f"/backends/{name}")
        for body in self.added.values():
            await self._ask([worker], "POST", "/backends", body)
        for name, action in self.actions.items():
            await self._ask([worker], "POST", f"/backends/{name}/{action}")


def _canonical(address: str) -> str:
    """The backend's name as the workers spell it (`localhost` becomes 127.0.0.1)."""
    from lb.backend import parse_backend

    return parse_backend(address).name


def _relay(reply) -> Response:
    content_type = reply.headers.get("Content-Type") or "application/octet-stream"
    headers = [("Content-Type", content_type)]
    allow = reply.headers.get("Allow")
    if allow:
        headers.append(("Allow", allow))
    return Response(reply.status, headers, reply.body)


def fanout_admin_server(config: ServerConfig, supervisor) -> Server:
    """The master's admin HTTP server, named `lb-admin` like a single lb's."""
    return http_server("lb-admin", config, FanoutAdmin(supervisor))
