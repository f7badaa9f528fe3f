"""Many clients at once: INCRs are never lost, WATCH/MULTI/EXEC transfers conserve money."""

from __future__ import annotations

import random
import threading

from .conftest import RawClient

CLIENTS = 8
ACCOUNTS = 5
START_BALANCE = 100


def _run(threads_fn, n: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            threads_fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_incr_loses_nothing(server):
    def work(i: int) -> None:
        c = RawClient(server)
        try:
            # Pipelined bursts: many writes in flight, sharing fsyncs.
            for _ in range(5):
                c.pipeline([("INCR", "counter")] * 20)
        finally:
            c.close()

    assert not _run(work, CLIENTS)
    c = RawClient(server)
    assert c.call("GET", "counter") == str(CLIENTS * 100).encode()
    c.close()


def test_watch_multi_exec_transfers_conserve_the_total(server):
    setup = RawClient(server)
    setup.call("MSET", *[x for a in range(ACCOUNTS) for x in (f"acct:{a}", START_BALANCE)])
    setup.close()
    retries = [0]

    def work(i: int) -> None:
        rng = random.Random(i)
        c = RawClient(server)
        try:
            for _ in range(15):
                src, dst = rng.sample(range(ACCOUNTS), 2)
                amount = rng.randint(1, 20)
                while True:
                    c.call("WATCH", f"acct:{src}", f"acct:{dst}")
                    balance = int(c.call("GET", f"acct:{src}"))
                    if balance < amount:
                        c.call("UNWATCH")
                        break
                    c.call("MULTI")
                    c.call("DECRBY", f"acct:{src}", amount)
                    c.call("INCRBY", f"acct:{dst}", amount)
                    if c.call("EXEC") is not None:
                        break
                    retries[0] += 1
        finally:
            c.close()

    assert not _run(work, CLIENTS)
    c = RawClient(server)
    balances = [int(v) for v in c.call("MGET", *[f"acct:{a}" for a in range(ACCOUNTS)])]
    c.close()
    assert sum(balances) == ACCOUNTS * START_BALANCE
    assert min(balances) >= 0


def test_scan_never_skips_keys_that_exist_throughout(server):
    writer = RawClient(server)
    scanner = RawClient(server)
    try:
        writer.pipeline([("SET", f"stable:{i}", "x") for i in range(300)])
        seen, cursor, n = set(), b"0", 0
        while True:
            cursor, keys = scanner.call("SCAN", cursor, "COUNT", "10")
            seen.update(keys)
            # Meanwhile another client adds many keys (the table grows) and deletes some.
            writer.pipeline([("SET", f"churn:{n}:{j}", "y") for j in range(40)])
            writer.call("DEL", *[f"churn:{n - 1}:{j}" for j in range(0, 40, 3)])
            n += 1
            if cursor == b"0":
                break
        assert {f"stable:{i}".encode() for i in range(300)} <= seen
    finally:
        writer.close()
        scanner.close()
