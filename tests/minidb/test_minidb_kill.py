"""kill -9 under a write load with fsync=always: every acknowledged write survives."""

from __future__ import annotations

import threading

from minisys.testing import ServerProcess, wait_until

from .conftest import RawClient

WRITERS = 4


def test_every_acknowledged_write_survives_sigkill(tmp_path):
    args = ("--data-dir", str(tmp_path), "--fsync", "always", "--max-file-size", "20000")
    acked: list[dict[bytes, bytes]] = [{} for _ in range(WRITERS)]

    def writer(w: int, port: int) -> None:
        c = RawClient(port)
        n = 0
        try:
            while True:
                key, value = b"w%d:%d" % (w, n % 50), b"value-%d-%d" % (w, n)
                if n % 7 == 3:  # some atomic batches too
                    reply = c.call("MSET", key, value, b"batch:%d" % w, value)
                    if reply == "OK":
                        acked[w][b"batch:%d" % w] = value
                else:
                    reply = c.call("SET", key, value)
                if reply == "OK":
                    acked[w][key] = value  # acknowledged: must survive
                n += 1
        except OSError:
            return  # the server died mid-request: that write was never acknowledged
        finally:
            c.close()

    with ServerProcess("minidb", *args) as proc:
        threads = [threading.Thread(target=writer, args=(w, proc.port)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        wait_until(lambda: sum(len(a) for a in acked) >= 150, timeout=30)
        proc.kill()
        for t in threads:
            t.join(timeout=30)
    with ServerProcess("minidb", *args) as proc:
        c = RawClient(proc.port)
        for w in range(WRITERS):
            keys = list(acked[w])
            values = c.call("MGET", *keys)
            for key, value in zip(keys, values, strict=True):
                # The acknowledged value, or a newer one whose ack never arrived.
                assert value is not None, key
                assert value == acked[w][key] or int(value.split(b"-")[2]) > int(
                    acked[w][key].split(b"-")[2]
                ), (key, value, acked[w][key])
        c.close()


def test_sigkill_while_a_merge_runs_keeps_every_acknowledged_write(tmp_path):
    args = ("--data-dir", str(tmp_path), "--fsync", "always", "--max-file-size", "4096")
    expected: dict[bytes, bytes] = {}
    with ServerProcess("minidb", *args) as proc:
        c = RawClient(proc.port)
        for round_ in range(4):  # overwrite the same keys: lots of dead bytes to merge
            replies = c.pipeline([("SET", f"k{i}", f"r{round_}-{i}") for i in range(300)])
            assert replies == ["OK"] * 300
        expected = {b"k%d" % i: b"r3-%d" % i for i in range(300)}
        c.call("DEL", "k7")
        del expected[b"k7"]
        assert c.call("BGREWRITEAOF") == "Background append only file rewriting started"
        c.pipeline([("SET", f"late{i}", "x") for i in range(50)])  # racing the merge
        expected.update({b"late%d" % i: b"x" for i in range(50)})
        proc.kill()  # somewhere in the middle of (or just after) the merge
        c.close()
    with ServerProcess("minidb", *args) as proc:
        c = RawClient(proc.port)
        keys = sorted(expected)
        assert c.call("MGET", *keys) == [expected[k] for k in keys]
        assert c.call("EXISTS", "k7") == 0
        assert c.call("DBSIZE") == len(expected)
        c.close()
