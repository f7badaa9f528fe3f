"""What only minidb has: INFO persistence, COMPACT, SAVE, refused expiry, restart."""

from __future__ import annotations

from minidb import open_db, record
from minidb.commands import ERR_KEY_TOO_BIG, OK
from minidb.server import MinidbEngine
from minisys.resp import RespError
from minisys.testing import ServerProcess

from .conftest import RawClient


def _info(client: RawClient, section: str) -> dict[str, str]:
    text = client.call("INFO", section)
    text = text if isinstance(text, bytes) else text.text
    pairs = [line.split(":", 1) for line in text.decode().splitlines() if ":" in line]
    return dict(pairs)


def test_info_save_compact_and_expiry(minidb_port):
    c = RawClient(minidb_port)
    try:
        c.call("FLUSHALL")
        for i in range(20):
            c.call("SET", "k", str(i))
        assert c.call("SAVE") == "OK"
        persistence = _info(c, "persistence")
        assert persistence["aof_enabled"] == "1"
        assert persistence["appendfsync"] == "always"
        assert int(persistence["minidb_dead_bytes"]) > 0
        assert _info(c, "keyspace") == {"db0": "keys=1,expires=0,avg_ttl=0"}
        assert c.call("COMPACT") == "OK"
        after = _info(c, "persistence")
        assert int(after["minidb_merges"]) >= 1
        assert int(after["minidb_dead_bytes"]) == 0
        assert c.call("GET", "k") == b"19"
        assert c.call("BGREWRITEAOF") == "Background append only file rewriting started"
        assert c.call("SET", "k", "v", "EX", "10") == RespError(
            "ERR minidb keys never expire: EX, PX, EXAT and PXAT are not supported"
        )
        assert c.call("CONFIG", "GET", "appendonly") == [b"appendonly", b"yes"]
    finally:
        c.close()


def test_data_survives_a_graceful_restart(tmp_path):
    args = ("--data-dir", str(tmp_path), "--fsync", "everysec")
    with ServerProcess("minidb", *args) as proc:
        c = RawClient(proc.port)
        c.pipeline([("SET", f"k{i}", f"v{i}") for i in range(100)])
        c.call("MSET", "a", "1", "b", "2")
        c.call("DEL", "k5")
        c.close()
        assert proc.terminate() == 0
    with ServerProcess("minidb", *args) as proc:
        c = RawClient(proc.port)
        assert c.call("DBSIZE") == 101
        assert c.call("MGET", "k0", "k5", "k99", "a", "b") == [b"v0", None, b"v99", b"1", b"2"]
        c.close()


def test_exec_and_mset_are_one_batch_in_the_log(tmp_path):
    with ServerProcess("minidb", "--data-dir", str(tmp_path), "--fsync", "always") as proc:
        c = RawClient(proc.port)
        c.call("SET", "solo", "1")
        c.call("MULTI")
        c.call("SET", "a", "1")
        c.call("INCR", "a")
        c.call("SET", "b", "x")
        assert c.call("EXEC") == ["OK", 2, "OK"]
        c.call("MSET", "m1", "1", "m2", "2")
        c.close()
        assert proc.terminate() == 0
    data = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("*.data")))
    flags = [(f, key) for _, f, _, key, _ in record.RecordScanner(data)]
    batch, commit = record.FLAG_BATCH, record.FLAG_BATCH | record.FLAG_COMMIT
    assert flags == [
        (0, b"solo"),
        (batch, b"a"), (batch, b"a"), (commit, b"b"),
        (batch, b"m1"), (commit, b"m2"),
    ]  # fmt: skip


def test_a_plain_set_takes_the_short_path_with_the_same_outcomes(tmp_path):
    db = open_db(tmp_path, fsync="no", auto_merge=False)
    engine = MinidbEngine(db)
    session = engine.open_session(("127.0.0.1", 1))
    written = db.commit.written
    assert engine.execute(session, [b"SET", b"k", b"v"]) == OK
    assert db.get(b"k") == b"v" and db.commit.written == written + 1  # one record
    too_big = b"k" * (record.MAX_KEY_SIZE + 1)
    assert engine.execute(session, [b"SET", too_big, b"v"]) == RespError(ERR_KEY_TOO_BIG)
    assert engine.execute(session, [b"SET", b"k", b"w", b"NX"]) is None  # options: the long way
    db.close()
    assert engine.execute(session, [b"SET", b"k", b"x"]) == RespError("ERR the database is closed")
