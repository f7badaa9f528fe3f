"""Every kvcache command through a real socket, with Redis 7.0's exact replies and errors.

Each scenario is a list of (command, expected reply) steps run on a flushed server; the
`server` fixture runs it against kvcache and against the real redis-server, so the
expected replies are Redis's own, not our guesses. An expected value may be a predicate
for replies that depend on the clock (PTTL).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from minisys.resp import RespError, SimpleString

OK = SimpleString("OK")
FUTURE_S = 4102444800  # 2100-01-01 in Unix seconds
FUTURE_MS = FUTURE_S * 1000


def E(text: str) -> RespError:
    return RespError(text)


def between(lo: int, hi: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and lo <= v <= hi


def ttl_of(seconds: int) -> Callable[[object], bool]:
    """TTL right after setting `seconds`: a loaded machine may take a second to ask."""
    return between(seconds - 1, seconds)


def same_items(*items: bytes) -> Callable[[object], bool]:
    return lambda v: isinstance(v, list) and sorted(v) == sorted(items)


NOT_INT = E("ERR value is not an integer or out of range")
SYNTAX = E("ERR syntax error")

SCENARIOS: dict[str, list[tuple[tuple, object]]] = {
    "get_set": [
        (("SET", "k", "v"), OK),
        (("GET", "k"), b"v"),
        (("GET", "missing"), None),
        (("SET", "e", ""), OK),
        (("GET", "e"), b""),
        (("SET", "bin", b"\x00\r\n\xff"), OK),
        (("GET", "bin"), b"\x00\r\n\xff"),
    ],
    "set_nx_xx": [
        (("SET", "k", "v", "NX"), OK),
        (("SET", "k", "w", "nx"), None),
        (("SET", "k", "w", "XX"), OK),
        (("GET", "k"), b"w"),
        (("SET", "n", "v", "XX"), None),
        (("GET", "n"), None),
    ],
    "set_get_option": [
        (("SET", "k", "v", "GET"), None),
        (("SET", "k", "w", "GET"), b"v"),
        (("SET", "k", "x", "NX", "GET"), b"w"),
        (("GET", "k"), b"w"),
        (("SET", "m", "x", "XX", "GET"), None),
        (("EXISTS", "m"), 0),
    ],
    "set_errors": [
        (("SET", "k", "v", "FOO"), SYNTAX),
        (("SET", "k", "v", "NX", "XX"), SYNTAX),
        (("SET", "k", "v", "EX"), SYNTAX),
        (("SET", "k", "v", "EX", "10", "PX", "100"), SYNTAX),
        (("SET", "k", "v", "KEEPTTL", "EX", "10"), SYNTAX),
        (("SET", "k", "v", "EX", "abc"), NOT_INT),
        (("SET", "k", "v", "EX", "0"), E("ERR invalid expire time in 'set' command")),
        (("SET", "k", "v", "PX", "-5"), E("ERR invalid expire time in 'set' command")),
        (
            ("SET", "k", "v", "EX", "9223372036854775807"),
            E("ERR invalid expire time in 'set' command"),
        ),
        (("SET", "k"), E("ERR wrong number of arguments for 'set' command")),
        (("EXISTS", "k"), 0),
    ],
    "set_expiry": [
        (("SET", "k", "v", "EX", "100"), OK),
        (("TTL", "k"), ttl_of(100)),
        (("SET", "k", "v", "EX", "10", "EX", "20"), OK),
        (("TTL", "k"), ttl_of(20)),
        (("SET", "k", "v"), OK),
        (("TTL", "k"), -1),
        (("SET", "k", "v", "PX", "100000"), OK),
        (("SET", "k", "w", "KEEPTTL"), OK),
        (("TTL", "k"), ttl_of(100)),
        (("GET", "k"), b"w"),
        (("SET", "a", "v", "EXAT", str(FUTURE_S)), OK),
        (("EXPIRETIME", "a"), FUTURE_S),
        (("SET", "b", "v", "PXAT", str(FUTURE_MS + 1)), OK),
        (("PEXPIRETIME", "b"), FUTURE_MS + 1),
        (("SET", "p", "v", "PXAT", "1"), OK),
        (("GET", "p"), None),
        (("EXISTS", "p"), 0),
    ],
    "setnx_setex_psetex": [
        (("SETNX", "k", "v"), 1),
        (("SETNX", "k", "w"), 0),
        (("GET", "k"), b"v"),
        (("SETEX", "s", "100", "v"), OK),
        (("TTL", "s"), ttl_of(100)),
        (("SETEX", "s", "0", "v"), E("ERR invalid expire time in 'setex' command")),
        (("SETEX", "s", "abc", "v"), NOT_INT),
        (("PSETEX", "p", "100000", "v"), OK),
        (("PTTL", "p"), between(98_000, 100_000)),
        (("PSETEX", "p", "-1", "v"), E("ERR invalid expire time in 'psetex' command")),
    ],
    "getset_getdel": [
        (("GETSET", "k", "v"), None),
        (("GETSET", "k", "w"), b"v"),
        (("SET", "t", "x", "EX", "100"), OK),
        (("GETSET", "t", "y"), b"x"),
        (("TTL", "t"), -1),
        (("GETDEL", "k"), b"w"),
        (("GETDEL", "k"), None),
        (("EXISTS", "k"), 0),
    ],
    "getex": [
        (("SET", "k", "v"), OK),
        (("GETEX", "k", "EX", "100"), b"v"),
        (("TTL", "k"), ttl_of(100)),
        (("GETEX", "k", "PERSIST"), b"v"),
        (("TTL", "k"), -1),
        (("GETEX", "k"), b"v"),
        (("GETEX", "missing", "EX", "10"), None),
        (("GETEX", "k", "EX", "0"), E("ERR invalid expire time in 'getex' command")),
        (("GETEX", "k", "NX"), SYNTAX),
        (("GETEX", "k", "PERSIST", "EX", "10"), SYNTAX),
        (("GETEX", "k", "PXAT", "1"), b"v"),
        (("EXISTS", "k"), 0),
    ],
    "mget_mset_msetnx": [
        (("MSET", "a", "1", "b", "2"), OK),
        (("MGET", "a", "b", "c"), [b"1", b"2", None]),
        (("MSET", "a"), E("ERR wrong number of arguments for 'mset' command")),
        (("MSET", "a", "1", "b"), E("ERR wrong number of arguments for 'mset' command")),
        (("MSETNX", "a", "3", "c", "4"), 0),
        (("MSETNX", "c", "3", "d", "4"), 1),
        (("MGET", "c", "d"), [b"3", b"4"]),
        (("MSETNX", "x", "1", "y"), E("ERR wrong number of arguments for 'msetnx' command")),
    ],
    "append_strlen": [
        (("APPEND", "k", "ab"), 2),
        (("APPEND", "k", "cd"), 4),
        (("GET", "k"), b"abcd"),
        (("STRLEN", "k"), 4),
        (("STRLEN", "missing"), 0),
        (("SET", "t", "x", "EX", "100"), OK),
        (("APPEND", "t", "y"), 2),
        (("TTL", "t"), ttl_of(100)),
    ],
    "incr_family": [
        (("INCR", "n"), 1),
        (("INCRBY", "n", "10"), 11),
        (("DECR", "n"), 10),
        (("DECRBY", "n", "3"), 7),
        (("GET", "n"), b"7"),
        (("INCRBY", "n", "abc"), NOT_INT),
        (("SET", "s", "abc"), OK),
        (("INCR", "s"), NOT_INT),
        (("SET", "sp", " 1"), OK),
        (("INCR", "sp"), NOT_INT),
        (("SET", "f", "1.5"), OK),
        (("INCR", "f"), NOT_INT),
        (("SET", "big", "9223372036854775807"), OK),
        (("INCR", "big"), E("ERR increment or decrement would overflow")),
        (("DECRBY", "n", "-9223372036854775808"), E("ERR decrement would overflow")),
        (("SET", "t", "1", "EX", "100"), OK),
        (("INCR", "t"), 2),
        (("TTL", "t"), ttl_of(100)),
    ],
    "incrbyfloat": [
        (("INCRBYFLOAT", "f", "10.5"), b"10.5"),
        (("INCRBYFLOAT", "f", "0.1"), b"10.6"),
        (("INCRBYFLOAT", "f", "-5"), b"5.6"),
        (("SET", "g", "5.0e3"), OK),
        (("INCRBYFLOAT", "g", "2.0e2"), b"5200"),
        (("INCRBYFLOAT", "f", "abc"), E("ERR value is not a valid float")),
        (("SET", "s", "abc"), OK),
        (("INCRBYFLOAT", "s", "1"), E("ERR value is not a valid float")),
        (("INCRBYFLOAT", "f", "inf"), E("ERR increment would produce NaN or Infinity")),
    ],
    "getrange_setrange": [
        (("SET", "k", "Hello World"), OK),
        (("GETRANGE", "k", "0", "4"), b"Hello"),
        (("GETRANGE", "k", "-5", "-1"), b"World"),
        (("GETRANGE", "k", "5", "2"), b""),
        (("GETRANGE", "k", "0", "100"), b"Hello World"),
        (("GETRANGE", "missing", "0", "1"), b""),
        (("GETRANGE", "k", "a", "b"), NOT_INT),
        (("SETRANGE", "k", "6", "Redis"), 11),
        (("GET", "k"), b"Hello Redis"),
        (("SETRANGE", "n", "3", "ab"), 5),
        (("GET", "n"), b"\x00\x00\x00ab"),
        (("SETRANGE", "k", "-1", "x"), E("ERR offset is out of range")),
        (("SETRANGE", "e", "0", ""), 0),
        (("EXISTS", "e"), 0),
        (
            ("SETRANGE", "k", "536870911", "ab"),
            E("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
        ),
    ],
    "del_exists_touch_type": [
        (("MSET", "a", "1", "b", "2"), OK),
        (("EXISTS", "a", "a", "b", "c"), 3),
        (("TOUCH", "a", "b", "c"), 2),
        (("TYPE", "a"), SimpleString("string")),
        (("TYPE", "zz"), SimpleString("none")),
        (("DEL", "a", "b", "c"), 2),
        (("UNLINK", "a"), 0),
        (("EXISTS", "a", "b"), 0),
    ],
    "keys_patterns": [
        (("MSET", "foo", "1", "foobar", "2", "bar", "3", "h?llo", "4"), OK),
        (("KEYS", "foo*"), same_items(b"foo", b"foobar")),
        (("KEYS", "f?o"), [b"foo"]),
        (("KEYS", "[fb]??"), same_items(b"foo", b"bar")),
        (("KEYS", "[^f]*"), same_items(b"bar", b"h?llo")),
        (("KEYS", "[a-c]*"), [b"bar"]),
        (("KEYS", "h\\?llo"), [b"h?llo"]),
        (("KEYS", "*"), same_items(b"foo", b"foobar", b"bar", b"h?llo")),
        (("KEYS", "nomatch*"), []),
    ],
    "rename": [
        (("SET", "a", "1", "EX", "100"), OK),
        (("RENAME", "a", "b"), OK),
        (("GET", "a"), None),
        (("GET", "b"), b"1"),
        (("TTL", "b"), ttl_of(100)),
        (("RENAME", "x", "y"), E("ERR no such key")),
        (("RENAMENX", "x", "y"), E("ERR no such key")),
        (("RENAMENX", "b", "b"), 0),
        (("SET", "c", "3"), OK),
        (("RENAMENX", "b", "c"), 0),
        (("RENAMENX", "b", "d"), 1),
        (("RENAME", "d", "d"), OK),
        (("RENAME", "d", "c"), OK),
        (("GET", "c"), b"1"),
    ],
    "randomkey_dbsize_flush": [
        (("RANDOMKEY",), None),
        (("SET", "a", "1"), OK),
        (("RANDOMKEY",), b"a"),
        (("SET", "b", "1"), OK),
        (("DBSIZE",), 2),
        (("FLUSHDB",), OK),
        (("DBSIZE",), 0),
        (("FLUSHALL", "ASYNC"), OK),
        (("FLUSHDB", "FOO"), SYNTAX),
    ],
    "expire_options": [
        (("SET", "k", "v"), OK),
        (("EXPIRE", "k", "100"), 1),
        (("TTL", "k"), ttl_of(100)),
        (("EXPIRE", "k", "100", "NX"), 0),
        (("EXPIRE", "k", "200", "XX"), 1),
        (("TTL", "k"), ttl_of(200)),
        (("EXPIRE", "k", "100", "GT"), 0),
        (("EXPIRE", "k", "300", "gt"), 1),
        (("EXPIRE", "k", "50", "LT"), 1),
        (("TTL", "k"), ttl_of(50)),
        (("PERSIST", "k"), 1),
        (("PERSIST", "k"), 0),
        (("PERSIST", "missing"), 0),
        (("EXPIRE", "k", "100", "XX"), 0),
        (("EXPIRE", "k", "100", "GT"), 0),
        (("EXPIRE", "k", "100", "LT"), 1),
        (("EXPIRE", "missing", "10"), 0),
        (("EXPIRE", "k", "10", "FOO"), E("ERR Unsupported option FOO")),
        (
            ("EXPIRE", "k", "10", "NX", "XX"),
            E("ERR NX and XX, GT or LT options at the same time are not compatible"),
        ),
        (
            ("EXPIRE", "k", "10", "GT", "LT"),
            E("ERR GT and LT options at the same time are not compatible"),
        ),
        (("EXPIRE", "k", "abc"), NOT_INT),
        (("EXPIRE", "k", "9223372036854775807"), E("ERR invalid expire time in 'expire' command")),
        (("EXPIRE", "k", "-1"), 1),
        (("EXISTS", "k"), 0),
    ],
    "expire_absolute_and_times": [
        (("SET", "k", "v"), OK),
        (("PEXPIREAT", "k", str(FUTURE_MS)), 1),
        (("PEXPIRETIME", "k"), FUTURE_MS),
        (("EXPIRETIME", "k"), FUTURE_S),
        (("EXPIREAT", "k", str(FUTURE_S + 1)), 1),
        (("EXPIRETIME", "k"), FUTURE_S + 1),
        (("PEXPIRE", "k", "100000"), 1),
        (("PTTL", "k"), between(98_000, 100_000)),
        (("EXPIRETIME", "missing"), -2),
        (("PEXPIRETIME", "missing"), -2),
        (("TTL", "missing"), -2),
        (("PTTL", "missing"), -2),
        (("SET", "p", "v"), OK),
        (("EXPIRETIME", "p"), -1),
        (("PTTL", "p"), -1),
        (("EXPIREAT", "p", "1"), 1),
        (("EXISTS", "p"), 0),
    ],
    "object": [
        (("SET", "i", "123"), OK),
        (("OBJECT", "ENCODING", "i"), b"int"),
        (("SET", "e", "hello"), OK),
        (("OBJECT", "encoding", "e"), b"embstr"),
        (("SET", "r", "x" * 50), OK),
        (("OBJECT", "ENCODING", "r"), b"raw"),
        (("OBJECT", "ENCODING", "missing"), None),
        (("OBJECT", "FOO"), E("ERR unknown subcommand 'FOO'. Try OBJECT HELP.")),
        (("OBJECT", "ENCODING"), E("ERR wrong number of arguments for 'object|encoding' command")),
    ],
    "arity_and_unknown": [
        (("GET",), E("ERR wrong number of arguments for 'get' command")),
        (("GET", "a", "b"), E("ERR wrong number of arguments for 'get' command")),
        (("FOO", "bar"), E("ERR unknown command 'FOO', with args beginning with: 'bar' ")),
        (("TTL",), E("ERR wrong number of arguments for 'ttl' command")),
        (("PING",), SimpleString("PONG")),
    ],
    "scan_errors": [
        (("SCAN", "abc"), E("ERR invalid cursor")),
        (("SCAN", " 1"), E("ERR invalid cursor")),
        (("SCAN", "1 "), E("ERR invalid cursor")),
        (("SCAN", "+"), E("ERR invalid cursor")),
        (("SCAN", "18446744073709551616"), E("ERR invalid cursor")),
        (("SCAN", ""), [b"0", []]),
        (("SCAN", "+0"), [b"0", []]),
        (("SCAN", "00"), [b"0", []]),
        (("SCAN", "0", "COUNT", "0"), SYNTAX),
        (("SCAN", "0", "FOO", "bar"), SYNTAX),
        (("SCAN", "0", "MATCH"), SYNTAX),
        (("SCAN", "0"), [b"0", []]),
    ],
    "config": [
        (("CONFIG", "GET", "maxmemory"), [b"maxmemory", b"0"]),
        (("CONFIG", "SET", "maxmemory", "10mb"), OK),
        (("CONFIG", "GET", "maxmemory"), [b"maxmemory", b"10485760"]),
        (("CONFIG", "SET", "maxmemory-policy", "volatile-ttl"), OK),
        (("CONFIG", "GET", "maxmemory-policy"), [b"maxmemory-policy", b"volatile-ttl"]),
        (
            ("CONFIG", "SET", "maxmemory", "abc"),
            E(
                "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument "
                "must be a memory value"
            ),
        ),
        (
            ("CONFIG", "SET", "maxmemory-policy", "bogus"),
            lambda v: (
                isinstance(v, RespError)
                and v.message.startswith(
                    "ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - "
                    "argument(s) must be one of the following: "
                )
            ),
        ),
    ],
}


def check(reply: object, expected: object) -> bool:
    if callable(expected) and not isinstance(expected, type):
        return bool(expected(reply))
    return reply == expected and type(reply) is type(expected)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(client, name: str) -> None:
    for command, expected in SCENARIOS[name]:
        reply = client.call(*command)
        assert check(reply, expected), f"{command!r} answered {reply!r}, Redis says {expected!r}"


def test_pipelined_commands_answer_in_order(client) -> None:
    commands = []
    for i in range(500):
        commands += [("SET", f"k{i}", i), ("INCR", f"k{i}"), ("GET", f"k{i}"), ("GET",)]
    replies = client.pipeline(commands)
    arity = E("ERR wrong number of arguments for 'get' command")
    for i in range(500):
        assert replies[4 * i : 4 * i + 4] == [OK, i + 1, b"%d" % (i + 1), arity]


def test_scan_returns_every_key_once_through_a_full_iteration(client) -> None:
    keys = {b"key:%d" % i for i in range(100)}
    client.call("MSET", *[x for k in keys for x in (k, b"v")])
    seen: list[bytes] = []
    cursor = b"0"
    for _ in range(1000):
        cursor, batch = client.call("SCAN", cursor, "COUNT", "7")
        seen += batch
        if cursor == b"0":
            break
    assert set(seen) == keys
    matched: list[bytes] = []
    cursor = b"0"
    for _ in range(1000):
        cursor, batch = client.call("SCAN", cursor, "MATCH", "key:1*", "COUNT", "1000")
        matched += batch
        if cursor == b"0":
            break
    assert sorted(matched) == sorted(k for k in keys if k.startswith(b"key:1"))


def stat(client, name: bytes) -> int:
    info = client.call("INFO", "stats")
    line = next(x for x in info.split(b"\r\n") if x.startswith(name + b":"))
    return int(line.split(b":")[1])


def test_keys_expire_without_being_read(client) -> None:
    expired = stat(client, b"expired_keys")
    client.call("SET", "gone", "v", "PX", "50")
    client.call("SET", "kept", "v")
    deadline = time.monotonic() + 10
    # Only the active sweep can bring DBSIZE down: nobody reads "gone".
    while client.call("DBSIZE") != 1:
        assert time.monotonic() < deadline, "the expired key was never reclaimed"
        client.call("PING")
    assert stat(client, b"expired_keys") == expired + 1


def test_info_counts_hits_misses_and_keyspace(client) -> None:
    hits, misses = stat(client, b"keyspace_hits"), stat(client, b"keyspace_misses")
    client.call("SET", "a", "1", "EX", "100")
    client.call("SET", "b", "1")
    client.call("GET", "a")
    client.call("GET", "nope")
    assert (stat(client, b"keyspace_hits"), stat(client, b"keyspace_misses")) == (
        hits + 1,
        misses + 1,
    )
    keyspace = client.call("INFO", "keyspace")
    assert b"# Keyspace\r\ndb0:keys=2,expires=1," in keyspace
    info = client.call("INFO")
    for field in (
        b"redis_version:",
        b"connected_clients:",
        b"used_memory:",
        b"maxmemory_policy:",
        b"evicted_keys:",
        b"expired_keys:",
    ):
        assert field in info


def test_allkeys_lru_evicts_under_maxmemory(client) -> None:
    client.call("CONFIG", "SET", "maxmemory", "3mb")
    value = b"x" * 1000
    for start in range(0, 6000, 500):
        client.pipeline([("SET", f"k{i}", value) for i in range(start, start + 500)])
    assert client.call("GET", "k5999") == value
    assert client.call("DBSIZE") < 6000
    assert stat(client, b"evicted_keys") > 0


def test_noeviction_answers_oom_and_keeps_reads_working(client) -> None:
    client.call("SET", "before", "v")
    client.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
    client.call("CONFIG", "SET", "maxmemory", "1")
    oom = E("OOM command not allowed when used memory > 'maxmemory'.")
    try:
        assert client.call("SET", "k", "v") == oom
        assert client.call("INCR", "n") == oom
        assert client.call("GET", "before") == b"v"
        assert client.call("DEL", "before") == 1
    finally:
        client.call("CONFIG", "SET", "maxmemory", "0")
        client.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
