"""The RESP engine's connection commands as kvcache serves them, against the real Redis too.

The engine (`minisys/resp/`) implements PING, ECHO, SELECT, CLIENT, HELLO, TIME and QUIT
and has its own tests; these check that kvcache's server answers them as redis-server
does, through the same `client` fixture (kvcache and the real Redis).
"""

from __future__ import annotations

from minisys.resp import RespError, SimpleString

OK = SimpleString("OK")


def digits(value: object) -> bool:
    return isinstance(value, bytes) and value.isdigit()


def test_connection_commands(client) -> None:
    assert client.call("PING") == SimpleString("PONG")
    assert client.call("PING", "hi") == b"hi"
    assert client.call("ECHO", "hello world") == b"hello world"
    assert client.call("ECHO") == RespError("ERR wrong number of arguments for 'echo' command")
    assert client.call("SELECT", "0") == OK
    assert client.call("SELECT", "abc") == RespError("ERR value is not an integer or out of range")
    assert client.call("CLIENT", "SETNAME", "appserver") == OK
    assert client.call("CLIENT", "GETNAME") == b"appserver"
    seconds, micros = client.call("TIME")
    assert digits(seconds) and digits(micros)
    hello = client.call("HELLO", "2")
    fields = dict(zip(hello[::2], hello[1::2], strict=True))
    assert (fields[b"server"], fields[b"proto"], fields[b"mode"]) == (b"redis", 2, b"standalone")


def test_quit_answers_ok_then_closes(connect, server: int) -> None:
    c = connect(server)
    c.call("SET", "k", "v")
    assert c.call("QUIT") == OK
    assert c.closed_by_server()
    c.close()
    with connect(server) as fresh:
        assert fresh.call("GET", "k") == b"v"
