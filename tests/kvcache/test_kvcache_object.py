"""OBJECT ENCODING / REFCOUNT / IDLETIME / FREQ / HELP, against kvcache and the real Redis.

The `client` fixture runs each test on kvcache and on redis-server, so every expected
reply below is Redis 7.0's own. IDLETIME needs real seconds to pass: the test writes all
its keys at once, polls (never touching them) until Redis's LRU clock says they have
been idle for 2 s, then checks which commands count as a use of a key.
"""

from __future__ import annotations

import pytest

from minisys.resp import RespError, SimpleString
from minisys.testing import wait_until

OK = SimpleString("OK")
SHARED = 2**31 - 1  # Redis's refcount of a shared integer object (INT_MAX)
FREQ_ERROR = RespError(
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. "
    "Please note that when switching between policies at runtime LRU and LFU data "
    "will take some time to adjust."
)


def enc(key: str) -> tuple:
    return ("OBJECT", "ENCODING", key)


ENCODING_STEPS = [
    (("SET", "i", "123"), OK),
    (enc("i"), b"int"),
    (("SET", "neg", "-9223372036854775808"), OK),
    (enc("neg"), b"int"),
    (("SET", "over", "9223372036854775808"), OK),
    (enc("over"), b"embstr"),
    (("SET", "zero", "012"), OK),
    (enc("zero"), b"embstr"),
    (("SET", "e44", "x" * 44), OK),
    (enc("e44"), b"embstr"),
    (("SET", "r45", "x" * 45), OK),
    (enc("r45"), b"raw"),
    (("SET", "empty", ""), OK),
    (enc("empty"), b"embstr"),
    # APPEND: to a missing key the value is encoded as SET would; to an existing one the
    # string is edited in place and becomes raw, even when short or numeric.
    (("APPEND", "a1", "7"), 1),
    (enc("a1"), b"int"),
    (("APPEND", "a2", "ab"), 2),
    (enc("a2"), b"embstr"),
    (("APPEND", "a2", "c"), 3),
    (enc("a2"), b"raw"),
    (("APPEND", "a1", ""), 1),
    (enc("a1"), b"raw"),
    # INCR on a raw "7" makes a new integer object.
    (("INCR", "a1"), 8),
    (enc("a1"), b"int"),
    # SETRANGE always leaves raw, on a new key too; an empty patch changes nothing.
    (("SETRANGE", "s1", "0", "12"), 2),
    (enc("s1"), b"raw"),
    (("SET", "s2", "hello"), OK),
    (("SETRANGE", "s2", "0", ""), 5),
    (enc("s2"), b"embstr"),
    (("SETRANGE", "s2", "0", "J"), 5),
    (enc("s2"), b"raw"),
    # A plain write re-encodes from scratch.
    (("SET", "s2", "hello"), OK),
    (enc("s2"), b"embstr"),
    # INCRBYFLOAT makes a string object: never int, even when it reads as one.
    (("INCRBYFLOAT", "f", "2"), b"2"),
    (enc("f"), b"embstr"),
    (("INCRBYFLOAT", "f", "1.5"), b"3.5"),
    (enc("f"), b"embstr"),
    (("INCRBYFLOAT", "big", "1e60"), lambda v: isinstance(v, bytes) and len(v) > 44),
    (enc("big"), b"raw"),
    (("INCR", "n"), 1),
    (enc("n"), b"int"),
    # RENAME moves the object as it is.
    (("RENAME", "a2", "moved"), OK),
    (enc("moved"), b"raw"),
    (("SETEX", "t", "100", "42"), OK),
    (enc("t"), b"int"),
    (("MSET", "m1", "5", "m2", "five"), OK),
    (enc("m1"), b"int"),
    (enc("m2"), b"embstr"),
    (enc("missing"), None),
]

REFCOUNT_STEPS = [
    (("SET", "small", "9999"), OK),
    (("OBJECT", "REFCOUNT", "small"), SHARED),
    (("SET", "big", "10000"), OK),
    (("OBJECT", "REFCOUNT", "big"), 1),
    (("SET", "neg", "-1"), OK),
    (("OBJECT", "REFCOUNT", "neg"), 1),
    (("SET", "s", "hello"), OK),
    (("OBJECT", "REFCOUNT", "s"), 1),
    (("INCR", "n"), 1),
    (("OBJECT", "REFCOUNT", "n"), SHARED),
    (("INCRBYFLOAT", "f", "3"), b"3"),
    (("OBJECT", "REFCOUNT", "f"), 1),
    (("OBJECT", "REFCOUNT", "missing"), None),
    # With maxmemory and an LRU policy, integers are not shared (each needs its own
    # access time).
    (("CONFIG", "SET", "maxmemory", "100mb"), OK),
    (("SET", "lru", "5"), OK),
    (("OBJECT", "REFCOUNT", "lru"), 1),
    (("CONFIG", "SET", "maxmemory-policy", "allkeys-random"), OK),
    (("SET", "rnd", "5"), OK),
    (("OBJECT", "REFCOUNT", "rnd"), SHARED),
]

OTHER_STEPS = [
    (("SET", "k", "v"), OK),
    (("OBJECT", "FREQ", "k"), FREQ_ERROR),
    (("OBJECT", "FREQ", "missing"), None),
    (("OBJECT", "IDLETIME", "missing"), None),
    (("OBJECT",), RespError("ERR wrong number of arguments for 'object' command")),
    (("OBJECT", "FOO"), RespError("ERR unknown subcommand 'FOO'. Try OBJECT HELP.")),
    (("OBJECT", "foo", "k"), RespError("ERR unknown subcommand 'foo'. Try OBJECT HELP.")),
    (
        ("OBJECT", "ENCODING"),
        RespError("ERR wrong number of arguments for 'object|encoding' command"),
    ),
    (
        ("OBJECT", "idletime", "k", "x"),
        RespError("ERR wrong number of arguments for 'object|idletime' command"),
    ),
    (
        ("OBJECT", "REFCOUNT", "k", "x"),
        RespError("ERR wrong number of arguments for 'object|refcount' command"),
    ),
    (("OBJECT", "FREQ"), RespError("ERR wrong number of arguments for 'object|freq' command")),
    (("OBJECT", "HELP", "x"), RespError("ERR wrong number of arguments for 'object|help' command")),
]


@pytest.mark.parametrize(
    "steps",
    [ENCODING_STEPS, REFCOUNT_STEPS, OTHER_STEPS],
    ids=["encoding", "refcount", "freq_and_errors"],
)
def test_object_replies(client, steps) -> None:
    for command, expected in steps:
        reply = client.call(*command)
        if callable(expected):
            assert expected(reply), f"{command!r} answered {reply!r}"
            continue
        assert reply == expected and type(reply) is type(expected), (
            f"{command!r} answered {reply!r}, Redis says {expected!r}"
        )


def test_object_help_is_redis_text(client) -> None:
    lines = client.call("OBJECT", "HELP")
    assert all(type(line) is SimpleString for line in lines)
    assert lines[0] == "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert [x.strip() for x in lines if not x.startswith(" ")] == [
        lines[0],
        "ENCODING <key>",
        "FREQ <key>",
        "IDLETIME <key>",
        "REFCOUNT <key>",
        "HELP",
    ]
    assert lines[-1] == "    Prints this help."
    assert len(lines) == 15


def test_object_lookups_count_hits_and_misses(client) -> None:
    def stats() -> tuple[int, int]:
        lines = client.call("INFO", "stats").split(b"\r\n")
        info = dict(line.split(b":", 1) for line in lines if b":" in line)
        return int(info[b"keyspace_hits"]), int(info[b"keyspace_misses"])

    client.call("SET", "k", "hello")
    hits, misses = stats()
    for sub in ("ENCODING", "REFCOUNT", "IDLETIME", "FREQ"):
        client.call("OBJECT", sub, "k")
        client.call("OBJECT", sub, "missing")
    assert stats() == (hits + 4, misses + 4)


# (command, key it is about, True if it counts as a use of that key). Every key starts
# as the string "hello" with no TTL; "other" is a second key some commands need.
IDLE_CASES = [
    (("GET", "get"), "get", True),
    (("MGET", "missing", "mget"), "mget", True),
    (("STRLEN", "strlen"), "strlen", True),
    (("GETRANGE", "getrange", "0", "1"), "getrange", True),
    (("TOUCH", "touch"), "touch", True),
    (("GETEX", "getex"), "getex", True),
    (("GETEX", "getexbad", "EX", "0"), "getexbad", True),
    (("SET", "setnx_opt", "v", "NX"), "setnx_opt", True),
    (("SETNX", "setnx", "v"), "setnx", True),
    (("MSETNX", "missing2", "v", "msetnx", "v"), "msetnx", True),
    (("SETRANGE", "setrange", "0", ""), "setrange", True),
    (("INCR", "incr"), "incr", True),
    (("INCRBYFLOAT", "incrbyfloat", "1"), "incrbyfloat", True),
    (("EXPIRE", "expire_xx", "1000", "XX"), "expire_xx", True),
    (("PERSIST", "persist"), "persist", True),
    (("RENAME", "rename_same", "rename_same"), "rename_same", True),
    (("RENAMENX", "other", "renamenx_dst"), "renamenx_dst", True),
    (("EXISTS", "exists"), "exists", False),
    (("TYPE", "type"), "type", False),
    (("TTL", "ttl"), "ttl", False),
    (("PTTL", "pttl"), "pttl", False),
    (("EXPIRETIME", "expiretime"), "expiretime", False),
    (("OBJECT", "ENCODING", "object"), "object", False),
    (("OBJECT", "FREQ", "freq"), "freq", False),
    (("SCAN", "0", "MATCH", "scan"), "scan", False),
    (("KEYS", "keys"), "keys", False),
    # Arguments Redis rejects before it looks the key up: no use.
    (("INCRBY", "incrby_bad", "abc"), "incrby_bad", False),
    (("SETRANGE", "setrange_bad", "-1", "x"), "setrange_bad", False),
    (("EXPIRE", "expire_bad", "abc"), "expire_bad", False),
    (("GETRANGE", "getrange_bad", "a", "1"), "getrange_bad", False),
    (("SET", "set_bad", "v", "EX", "0"), "set_bad", False),
]
IDLE_AGE = 2  # seconds every key is left alone before the commands run
IDLE_TIMEOUT = 15.0  # seconds to wait for that on a loaded machine


def test_idletime_counts_the_uses_redis_counts(client) -> None:
    keys = {key for _, key, _ in IDLE_CASES} | {"other", "probe"}
    client.call("MSET", *[x for key in sorted(keys) for x in (key, "hello")])
    assert client.call("OBJECT", "IDLETIME", "probe") in (0, 1)
    # Polling with OBJECT IDLETIME is itself part of the test: it must not touch the key.
    wait_until(
        lambda: client.call("OBJECT", "IDLETIME", "probe") >= IDLE_AGE,
        timeout=IDLE_TIMEOUT,
        interval=0.05,
    )
    for command, key, uses in IDLE_CASES:
        _, idle = client.pipeline([command, ("OBJECT", "IDLETIME", key)])
        if uses:
            assert idle <= 1, f"{command!r} should count as a use of {key!r} (idle {idle})"
        else:
            assert idle >= IDLE_AGE, f"{command!r} should not touch {key!r} (idle {idle})"
    # A write replaces the value: a fresh object, never idle.
    _, idle = client.pipeline([("SET", "probe", "new"), ("OBJECT", "IDLETIME", "probe")])
    assert idle <= 1
