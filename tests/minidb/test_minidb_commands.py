"""RESP commands over a socket, against minidb and (where installed) the real Redis."""

from __future__ import annotations

from minisys.resp import RespError

from .conftest import RawClient


def err(text: str) -> RespError:
    return RespError(text)


def test_get_set_and_conditions(client):
    assert client.call("GET", "k") is None
    assert client.call("SET", "k", "v1") == "OK"
    assert client.call("GET", "k") == b"v1"
    assert client.call("SET", "k", "v2", "NX") is None
    assert client.call("SET", "k", "v2", "XX") == "OK"
    assert client.call("SET", "new", "x", "XX") is None
    assert client.call("SET", "k", "v3", "GET") == b"v2"
    assert client.call("SET", "k", "v4", "NX", "GET") == b"v3"  # NX failed: old value
    assert client.call("SET", "fresh", "v", "NX", "GET") is None
    assert client.call("GET", "fresh") == b"v"
    assert client.call("SET", "k", "v", "NX", "XX") == err("ERR syntax error")
    assert client.call("SET", "k", "v", "BOGUS") == err("ERR syntax error")
    assert client.call("SET", "k", "v", "EX", "abc") == err(
        "ERR value is not an integer or out of range"
    )
    assert client.call("SET", "k", "v", "EX", "0") == err(
        "ERR invalid expire time in 'set' command"
    )
    assert client.call("SET", "k") == err("ERR wrong number of arguments for 'set' command")
    assert client.call("SET", "bin\x00key", b"\x00\xff\r\n") == "OK"
    assert client.call("GET", "bin\x00key") == b"\x00\xff\r\n"


def test_setnx_getdel_getset_append_strlen_type(client):
    assert client.call("SETNX", "a", "1") == 1
    assert client.call("SETNX", "a", "2") == 0
    assert client.call("GETSET", "a", "3") == b"1"
    assert client.call("APPEND", "a", "45") == 3
    assert client.call("APPEND", "b", "xy") == 2
    assert client.call("STRLEN", "a") == 3
    assert client.call("STRLEN", "nope") == 0
    assert client.call("TYPE", "a") == "string"
    assert client.call("TYPE", "nope") == "none"
    assert client.call("GETDEL", "a") == b"345"
    assert client.call("GETDEL", "a") is None
    assert client.call("EXISTS", "a") == 0


def test_multi_key_commands(client):
    assert client.call("MSET", "x", "1", "y", "2") == "OK"
    assert client.call("MGET", "x", "nope", "y") == [b"1", None, b"2"]
    assert client.call("MSET", "x", "1", "y") == err(
        "ERR wrong number of arguments for 'mset' command"
    )
    assert client.call("MSETNX", "y", "9", "z", "9") == 0
    assert client.call("MSETNX", "z", "9", "w", "9") == 1
    assert client.call("EXISTS", "x", "x", "nope", "z") == 3
    assert client.call("DEL", "x", "x", "nope", "z") == 2
    assert client.call("DBSIZE") == 2
    assert client.call("FLUSHALL") == "OK"
    assert client.call("DBSIZE") == 0
    assert client.call("FLUSHALL", "NOPE") == err("ERR syntax error")


def test_counters(client):
    assert client.call("INCR", "n") == 1
    assert client.call("INCRBY", "n", "41") == 42
    assert client.call("DECR", "n") == 41
    assert client.call("DECRBY", "n", "-9") == 50
    assert client.call("GET", "n") == b"50"
    client.call("SET", "s", "abc")
    not_int = err("ERR value is not an integer or out of range")
    assert client.call("INCR", "s") == not_int
    assert client.call("INCRBY", "n", "1.5") == not_int
    client.call("SET", "s", " 1")
    assert client.call("INCR", "s") == not_int
    client.call("SET", "big", str(2**63 - 1))
    assert client.call("INCR", "big") == err("ERR increment or decrement would overflow")
    assert client.call("DECRBY", "n", str(-(2**63))) == err("ERR decrement would overflow")
    assert client.call("GET", "big") == str(2**63 - 1).encode()


def test_keys_and_scan(client):
    for i in range(30):
        client.call("SET", f"user:{i}", "x")
    client.call("SET", "order:1", "y")
    assert sorted(client.call("KEYS", "user:1?")) == sorted(
        f"user:{i}".encode() for i in range(10, 20)
    )
    assert client.call("KEYS", "order:[0-9]") == [b"order:1"]
    assert client.call("KEYS", "nomatch*") == []
    seen, cursor = set(), b"0"
    while True:
        cursor, keys = client.call("SCAN", cursor, "MATCH", "user:*", "COUNT", "7")
        seen.update(keys)
        if cursor == b"0":
            break
    assert seen == {f"user:{i}".encode() for i in range(30)}
    cursor, keys = client.call("SCAN", "0", "COUNT", "1000", "TYPE", "hash")
    assert keys == []
    assert client.call("SCAN", "abc") == err("ERR invalid cursor")
    assert client.call("SCAN", "0", "COUNT", "0") == err("ERR syntax error")
    assert client.call("SCAN", "0", "MATCH") == err("ERR syntax error")


def test_unknown_command_and_arity(client):
    assert client.call("FOO", "bar") == err(
        "ERR unknown command 'FOO', with args beginning with: 'bar' "
    )
    assert client.call("GET") == err("ERR wrong number of arguments for 'get' command")


def test_multi_exec(client):
    assert client.call("EXEC") == err("ERR EXEC without MULTI")
    assert client.call("DISCARD") == err("ERR DISCARD without MULTI")
    assert client.call("MULTI") == "OK"
    assert client.call("MULTI") == err("ERR MULTI calls can not be nested")
    assert client.call("SET", "a", "1") == "QUEUED"
    assert client.call("INCR", "a") == "QUEUED"
    assert client.call("WATCH", "a") == err("ERR WATCH inside MULTI is not allowed")
    assert client.call("GET", "a") == "QUEUED"
    assert client.call("EXEC") == ["OK", 2, b"2"]
    assert client.call("MULTI") == "OK"
    assert client.call("SET", "a", "x") == "QUEUED"
    assert client.call("DISCARD") == "OK"
    assert client.call("GET", "a") == b"2"


def test_exec_runs_all_commands_even_after_a_runtime_error(client):
    client.call("SET", "s", "text")
    client.call("MULTI")
    client.call("INCR", "s")
    client.call("SET", "t", "1")
    reply = client.call("EXEC")
    assert reply == [err("ERR value is not an integer or out of range"), "OK"]
    assert client.call("GET", "t") == b"1"


def test_a_queuing_error_aborts_exec(client):
    client.call("MULTI")
    client.call("SET", "a", "1")
    assert client.call("NOSUCH") == err("ERR unknown command 'NOSUCH', with args beginning with: ")
    assert client.call("GET") == err("ERR wrong number of arguments for 'get' command")
    assert client.call("EXEC") == err("EXECABORT Transaction discarded because of previous errors.")
    assert client.call("GET", "a") is None


def test_watch(client, server):
    other = RawClient(server)
    try:
        client.call("SET", "w", "0")
        assert client.call("WATCH", "w") == "OK"
        other.call("SET", "w", "1")
        client.call("MULTI")
        client.call("SET", "w", "mine")
        assert client.call("EXEC") is None  # null array: someone changed w
        assert client.call("GET", "w") == b"1"
        # An unchanged watched key lets EXEC through; a failed SET NX changes nothing.
        client.call("WATCH", "w")
        other.call("SET", "w", "2", "NX")
        client.call("MULTI")
        client.call("SET", "w", "mine")
        assert client.call("EXEC") == ["OK"]
        # UNWATCH forgets; FLUSHALL touches every watched key.
        client.call("WATCH", "w")
        assert client.call("UNWATCH") == "OK"
        other.call("SET", "w", "3")
        client.call("MULTI")
        assert client.call("EXEC") == []
        client.call("WATCH", "w")
        other.call("FLUSHALL")
        client.call("MULTI")
        client.call("SET", "w", "4")
        assert client.call("EXEC") is None
    finally:
        other.close()


def test_pipelined_replies_stay_in_order(client):
    commands = [("SET", f"p{i}", str(i)) for i in range(50)]
    commands += [("GET", f"p{i}") for i in range(50)]
    commands += [("INCR", "p7"), ("MGET", "p1", "p2")]
    replies = client.pipeline(commands)
    assert replies[:50] == ["OK"] * 50
    assert replies[50:100] == [str(i).encode() for i in range(50)]
    assert replies[100:] == [8, [b"1", b"2"]]
