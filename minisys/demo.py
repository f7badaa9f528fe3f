"""`python -m minisys demo`: the seed's story, told by the running stack itself.

Each step sends real requests through the lb (client → lb → gateway → appserver → stores)
and checks that the stack did what the step says, printing what it saw:

    1. create a user and a product               POST /users, POST /products → 201
    2. read the profile twice                    a cache miss, then a hit (kvcache INFO)
    3. place orders                              201 each; the stock goes down
    4. the e-mail lands in the outbox            the worker wrote Message-ID <order-N@…>
    5. push past the rate limit                  the demo key gets 429 + Retry-After
    6. kill -9 one appserver                     requests keep succeeding

It exits 0 only if every step behaved as described. Without a running stack (no
`<data-dir>/minisys.json`), it starts one on free ports in a temporary directory and stops
it afterwards.

Simpler than the real thing: a real smoke test would also check the logs and the metrics
for every hop; we check one number or header per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from minisys.http.client import HttpClient
from minisys.resp.client import RespClient
from minisys.status import parse_info, read_state

BENCH_KEY = "minisys-bench-key"
DEMO_KEY = "minisys-demo-key"
# How long to wait for asynchronous effects (an e-mail, a restart) before the step fails.
EFFECT_TIMEOUT = 30.0
# The demo consumer's limit is 5 requests per 10 s; this many tries must meet a 429.
RATE_LIMIT_TRIES = 30
# Starting the whole stack takes a few seconds; on a loaded CI machine, much longer.
STACK_START_TIMEOUT = 120.0


class StepFailed(Exception):
    pass


class Demo:
    def __init__(self, state: dict[str, Any], http: HttpClient) -> None:
        self.state = state
        self.http = http
        self.host = state["host"]
        self.ports = {
            c["name"]: c["listeners"].get(c["kind"]) for c in state["components"]
        }  # fmt: skip
        self.base = f"http://{self.host}:{self.ports['lb']}"
        self.data_dir = Path(state["data_dir"])

    async def call(
        self, method: str, path: str, body: Any = None, key: str = BENCH_KEY
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {key}"}
        data = b""
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        resp = await self.http.request(method, self.base + path, headers=headers, body=data)
        parsed = None
        if resp.body and "json" in resp.headers.get("content-type", ""):
            parsed = json.loads(resp.body)
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, parsed

    async def cache_counters(self) -> tuple[int, int]:
        client = await RespClient.connect(self.host, self.ports["kvcache"])
        try:
            info = parse_info((await client.execute("INFO", "stats")).decode())
        finally:
            await client.close()
        return int(info["keyspace_hits"]), int(info["keyspace_misses"])

    # --- the steps ------------------------------------------------------------------------

    async def create(self) -> None:
        status, _, user = await self.call(
            "POST", "/users", {"name": "Ada Lovelace", "email": "ada@example.com"}
        )
        expect(status == 201, f"POST /users answered {status}: {user}")
        self.sku = f"demo-{int(time.time() * 1000)}"
        status, _, product = await self.call(
            "POST",
            "/products",
            {"sku": self.sku, "name": "Analytical Engine", "price": 99900, "stock": 3},
        )
        expect(status == 201, f"POST /products answered {status}: {product}")
        self.user_id = user["id"]
        say(f"user {self.user_id} and product {self.sku} (stock 3) created")

    async def profile_twice(self) -> None:
        _, misses0 = await self.cache_counters()
        status, headers, _ = await self.call("GET", f"/users/{self.user_id}")
        expect(status == 200, f"GET /users/{self.user_id} answered {status}")
        hits1, misses1 = await self.cache_counters()
        status, headers2, _ = await self.call("GET", f"/users/{self.user_id}")
        hits2, _ = await self.cache_counters()
        expect(misses1 > misses0, "the first read did not miss the cache")
        expect(hits2 > hits1, "the second read did not hit the cache")
        seen = f"first read: cache miss (misses {misses0}→{misses1}), "
        seen += f"second read: cache hit (hits {hits1}→{hits2})"
        if "x-cache" in headers:
            seen += f"; X-Cache: {headers['x-cache']}, then {headers2.get('x-cache')}"
        say(seen)

    async def orders(self) -> None:
        self.order_ids = []
        for _ in range(2):
            status, _, order = await self.call(
                "POST",
                "/place-order",
                {"user_id": self.user_id, "items": [{"sku": self.sku, "qty": 1}]},
            )
            expect(status == 201, f"POST /place-order answered {status}: {order}")
            self.order_ids.append(order["id"])
        status, _, product = await self.call("GET", f"/products/{self.sku}")
        expect(product and product.get("stock") == 1, f"stock should be 1 now, got {product}")
        say(f"orders {self.order_ids} placed (201); stock of {self.sku} went 3 → 1")

    async def emails(self) -> None:
        outbox = self.data_dir / "outbox.mbox"
        wanted = [f"<order-{oid}@" for oid in self.order_ids]
        deadline = time.monotonic() + EFFECT_TIMEOUT
        while True:
            text = outbox.read_text(errors="replace") if outbox.exists() else ""
            if all(text.count(w) == 1 for w in wanted):
                break
            expect(time.monotonic() < deadline, f"no e-mail for {wanted} in {outbox}")
            await asyncio.sleep(0.1)
        say(f"the worker wrote one e-mail per order to {outbox}")

    async def rate_limit(self) -> None:
        for attempt in range(1, RATE_LIMIT_TRIES + 1):
            status, headers, _ = await self.call("GET", f"/users/{self.user_id}", key=DEMO_KEY)
            if status == 429:
                expect(int(headers.get("retry-after", "0")) >= 1, "429 without Retry-After")
                say(
                    f"request {attempt} with the demo key: 429, Retry-After "
                    f"{headers['retry-after']}s, RateLimit: {headers.get('ratelimit', '?')}"
                )
                return
            expect(status == 200, f"demo key request answered {status}")
        raise StepFailed(f"no 429 after {RATE_LIMIT_TRIES} requests with the demo key")

    async def kill_appserver(self) -> None:
        victim = next(c for c in self.state["components"] if c["kind"] == "appserver")
        os.kill(victim["pid"], signal.SIGKILL)
        say(f"kill -9 {victim['name']} (pid {victim['pid']})")
        ok = 0
        for i in range(10):
            status, _, _ = await self.call("GET", f"/products/{self.sku}")
            expect(status == 200, f"request {i + 1} after the kill answered {status}")
            ok += 1
        status, _, order = await self.call(
            "POST",
            "/place-order",
            {"user_id": self.user_id, "items": [{"sku": self.sku, "qty": 1}]},
        )
        expect(status == 201, f"an order after the kill answered {status}: {order}")
        say(f"{ok} reads and 1 order after the kill: all answered (the gateway routed around it)")


def expect(condition: object, message: str) -> None:
    if not condition:
        raise StepFailed(message)


def say(text: str) -> None:
    print(f"   {text}", flush=True)


async def run_story(state: dict[str, Any]) -> int:
    async with HttpClient(total_timeout=EFFECT_TIMEOUT) as http:
        demo = Demo(state, http)
        steps = [
            ("create a user and a product", demo.create),
            ("read the profile twice", demo.profile_twice),
            ("place orders", demo.orders),
            ("the e-mails land in the outbox", demo.emails),
            ("push past the rate limit", demo.rate_limit),
            ("kill one appserver", demo.kill_appserver),
        ]
        for number, (title, step) in enumerate(steps, 1):
            print(f"{number}. {title}", flush=True)
            try:
                await step()
            except (StepFailed, OSError, KeyError, TypeError, ValueError) as exc:
                print(f"   FAILED: {exc}", flush=True)
                return 1
    print("every step behaved as described", flush=True)
    return 0


async def demo(data_dir: Path) -> int:
    state = read_state(data_dir)
    if state is not None:
        return await run_story(state)
    print(f"no stack running with data dir {data_dir}: starting one for the demo", flush=True)
    with tempfile.TemporaryDirectory(prefix="minisys-demo-") as tmp:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "minisys", "up", "--any-ports", "--data-dir", tmp,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        drain = None
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(STACK_START_TIMEOUT):
                async for line in proc.stdout:
                    if line.startswith(b"READY minisys"):
                        break
            # Keep reading the stack's logs so its pipe never fills up and blocks it.
            drain = asyncio.create_task(_discard(proc.stdout))
            state = read_state(Path(tmp))
            if state is None:
                print("the stack did not come up", flush=True)
                return 1
            code = await run_story(state)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            await proc.wait()
            if drain is not None:
                drain.cancel()
        return code


async def _discard(stream: asyncio.StreamReader) -> None:
    async for _ in stream:
        pass
