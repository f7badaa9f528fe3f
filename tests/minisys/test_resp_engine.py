"""The RESP engine without sockets: dispatch rules and the connection commands.

Error texts are Redis 7's (shared/specs/resp.md); the interop tests compare the same
commands against a real redis-server where one is installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from minisys.resp import NULL_ARRAY, RespError, SimpleString, Verbatim, encode_reply
from minisys.resp.engine import (
    ERR_NOT_FLOAT,
    ERR_NOT_INTEGER,
    ERR_SYNTAX,
    CommandError,
    CommandTable,
    Engine,
    parse_float,
    parse_int,
    unknown_command_error,
)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_engine(**kwargs) -> Engine:
    table = CommandTable()

    @table.command("get", arity=2, flags=("readonly", "fast"), first_key=1, last_key=1)
    def get(session, argv):
        """Get the value of a key."""
        return session.server_state.get(argv[1])

    @table.command("set", arity=-3, flags=("write",))
    def set_(session, argv):
        if len(argv) > 3:
            raise CommandError(ERR_SYNTAX)
        session.server_state[argv[1]] = argv[2]
        return SimpleString("OK")

    @table.command("boom", arity=1)
    def boom(session, argv):
        raise KeyError("bug")

    table.add("object", None, -2)

    @table.subcommand("object", "encoding", arity=3)
    def object_encoding(session, argv):
        return b"embstr"

    kwargs.setdefault("clock", FakeClock())
    return Engine(table, state={}, **kwargs)


def run(engine, session, *args):
    return engine.execute(session, [a if isinstance(a, bytes) else a.encode() for a in args])


@pytest.fixture
def engine():
    return make_engine()


@pytest.fixture
def session(engine):
    return engine.open_session(("127.0.0.1", 5555))


def test_handlers_and_case_insensitive_names(engine, session):
    assert run(engine, session, "SET", "k", "v") == SimpleString("OK")
    assert run(engine, session, "get", "k") == b"v"
    assert run(engine, session, "GeT", "k") == b"v"
    assert run(engine, session, "GET", "missing") is None


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["FOO", "bar"], "ERR unknown command 'FOO', with args beginning with: 'bar' "),
        (["foo"], "ERR unknown command 'foo', with args beginning with: "),
        (["GET"], "ERR wrong number of arguments for 'get' command"),
        (["GET", "a", "b"], "ERR wrong number of arguments for 'get' command"),
        (["SET", "k"], "ERR wrong number of arguments for 'set' command"),
        (["SET", "k", "v", "x"], "ERR syntax error"),
        (["OBJECT"], "ERR wrong number of arguments for 'object' command"),
        (["OBJECT", "foo"], "ERR unknown subcommand 'foo'. Try OBJECT HELP."),
        (["OBJECT", "encoding"], "ERR wrong number of arguments for 'object|encoding' command"),
        (["CLIENT", "FOO"], "ERR unknown subcommand 'FOO'. Try CLIENT HELP."),
        (["PING", "a", "b"], "ERR wrong number of arguments for 'ping' command"),
        (["SELECT", "x"], "ERR value is not an integer or out of range"),
        (["SELECT", "1"], "ERR DB index is out of range"),
        (["SELECT", "-1"], "ERR DB index is out of range"),
        (["HELLO", "4"], "NOPROTO unsupported protocol version"),
        (["HELLO", "1"], "NOPROTO unsupported protocol version"),
        (["HELLO", "x"], "ERR Protocol version is not an integer or out of range"),
        (["HELLO", "3", "FOO"], "ERR Syntax error in HELLO option 'FOO'"),
        (["HELLO", "3", "AUTH", "default"], "ERR Syntax error in HELLO option 'AUTH'"),
        (
            ["AUTH", "x"],
            "ERR AUTH <password> called without any password configured for the default "
            "user. Are you sure your configuration is correct?",
        ),
        (["AUTH", "bob", "x"], "WRONGPASS invalid username-password pair or user is disabled."),
        (
            ["CLIENT", "SETNAME", "a b"],
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ),
        (["CLIENT", "SETINFO", "foo", "x"], "ERR Unrecognized option 'foo'"),
        (
            ["CONFIG", "SET", "nosuch", "1"],
            "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'",
        ),
        (
            ["CONFIG", "SET", "databases", "4"],
            "ERR CONFIG SET failed (possibly related to argument 'databases') "
            "- can't set immutable config",
        ),
        (["CONFIG", "SET", "save"], "ERR wrong number of arguments for 'config|set' command"),
        (["CONFIG", "REWRITE"], "ERR The server is running without a config file"),
    ],
)
def test_error_replies_match_redis(engine, session, argv, error):
    assert run(engine, session, *argv) == RespError(error)


def test_unknown_command_error_cuts_and_cleans_like_redis():
    long = b"x" * 300
    text = unknown_command_error([long, b"a\r\nb", long])
    assert text.startswith("ERR unknown command '" + "x" * 128 + "', with args")
    assert "'a  b' '" + "x" * (128 - len("'a  b' ")) + "' " in text
    assert unknown_command_error([b"F\0OO", b"x"]).startswith("ERR unknown command 'F'")


def test_handler_bug_becomes_an_error_reply(engine, session):
    reply = run(engine, session, "BOOM")
    assert isinstance(reply, RespError)
    assert reply.message.startswith("ERR internal error")


def test_ping_echo_time_quit_select(engine, session):
    assert run(engine, session, "PING") == SimpleString("PONG")
    assert run(engine, session, "PING", "hi") == b"hi"
    assert run(engine, session, "ECHO", "x y") == b"x y"
    assert run(engine, session, "TIME") == [b"1700000000", b"250000"]
    assert run(engine, session, "SELECT", "0") == SimpleString("OK")
    assert not session.closing
    assert run(engine, session, "QUIT") == SimpleString("OK")
    assert session.closing


def test_hello_switches_protocol_and_answers_a_map(engine, session):
    reply = run(engine, session, "HELLO", "3", "SETNAME", "me")
    assert session.proto == 3
    assert reply == {
        b"server": b"redis",
        b"version": b"7.0.15",
        b"proto": 3,
        b"id": session.id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }
    assert run(engine, session, "CLIENT", "GETNAME") == b"me"
    assert encode_reply(reply, session.proto).startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis")
    assert run(engine, session, "HELLO", "2")[b"proto"] == 2
    assert session.proto == 2
    assert run(engine, session, "HELLO")[b"proto"] == 2


def test_redis_py_handshake(engine, session):
    assert run(engine, session, "HELLO", "3")[b"proto"] == 3
    maint = ["CLIENT", "MAINT_NOTIFICATIONS", "ON", "moving-endpoint-type", "internal-fqdn"]
    assert run(engine, session, *maint) == SimpleString("OK")
    assert run(engine, session, "CLIENT", "SETINFO", "LIB-NAME", "redis-py") == "OK"
    assert run(engine, session, "CLIENT", "SETINFO", "LIB-VER", "8.1.0") == "OK"
    assert session.lib_name == b"redis-py"
    info = run(engine, session, "CLIENT", "INFO")
    assert isinstance(info, Verbatim)
    assert b"lib-name=redis-py lib-ver=8.1.0" in info.text
    assert f"id={session.id} addr=127.0.0.1:5555".encode() in info.text


def test_client_id_setname_getname_list(engine, session):
    other = engine.open_session()
    assert run(engine, session, "CLIENT", "ID") == session.id
    assert run(engine, other, "CLIENT", "ID") == other.id != session.id
    assert run(engine, session, "CLIENT", "GETNAME") is None
    assert run(engine, session, "CLIENT", "SETNAME", "web-1") == "OK"
    assert run(engine, session, "CLIENT", "GETNAME") == b"web-1"
    listing = run(engine, session, "CLIENT", "LIST").text.decode()
    assert listing.count("\n") == 2
    assert "name=web-1" in listing
    engine.close_session(other)
    assert run(engine, session, "CLIENT", "LIST").text.count(b"\n") == 1
    assert run(engine, session, "CLIENT", "SETNAME", "") == "OK"
    assert run(engine, session, "CLIENT", "GETNAME") is None


def test_requirepass_gates_commands():
    engine = make_engine(requirepass="s3cret")
    session = engine.open_session()
    noauth = RespError("NOAUTH Authentication required.")
    assert run(engine, session, "GET", "k") == noauth
    assert run(engine, session, "PING") == noauth
    assert run(engine, session, "HELLO", "3") == RespError(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
        "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
        "select the RESP protocol version at the same time"
    )
    assert session.proto == 2
    wrongpass = RespError("WRONGPASS invalid username-password pair or user is disabled.")
    assert run(engine, session, "AUTH", "nope") == wrongpass
    assert run(engine, session, "AUTH", "s3cret") == "OK"
    assert run(engine, session, "GET", "k") is None
    other = engine.open_session()
    assert run(engine, other, "HELLO", "3", "AUTH", "default", "s3cret")[b"proto"] == 3
    assert other.authenticated


def test_unknown_command_comes_before_noauth():
    engine = make_engine(requirepass="pw")
    session = engine.open_session()
    assert run(engine, session, "NOPE").message.startswith("ERR unknown command 'NOPE'")
    assert run(engine, session, "GET").message.startswith("ERR wrong number of arguments")


def test_config_get_set_and_layer_parameters(engine, session):
    assert run(engine, session, "CONFIG", "GET", "save") == {b"save": b""}
    assert run(engine, session, "CONFIG", "GET", "appendonly") == {b"appendonly": b"no"}
    assert run(engine, session, "CONFIG", "GET", "nosuch") == {}
    # Several patterns at once (Redis 7); real Redis returns them in hash-table order.
    both = run(engine, session, "CONFIG", "GET", "save", "appendonly")
    assert both == {b"save": b"", b"appendonly": b"no"}
    limit = {"value": 0}

    def set_maxmemory(raw: bytes) -> None:
        if not raw.isdigit():
            raise ValueError("argument couldn't be parsed into an integer")
        limit["value"] = int(raw)

    engine.config.add("maxmemory", get=lambda: limit["value"], set=set_maxmemory)
    assert run(engine, session, "CONFIG", "SET", "maxmemory", "100") == "OK"
    assert limit["value"] == 100
    assert run(engine, session, "CONFIG", "GET", "MAX*") == {b"maxmemory": b"100"}
    assert run(engine, session, "CONFIG", "SET", "maxmemory", "x") == RespError(
        "ERR CONFIG SET failed (possibly related to argument 'maxmemory') "
        "- argument couldn't be parsed into an integer"
    )
    every = run(engine, session, "CONFIG", "GET", "*")
    assert set(every) == {b"save", b"appendonly", b"databases", b"maxmemory"}
    assert encode_reply(run(engine, session, "CONFIG", "GET", "save"), 2) == (
        b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    )


def test_info_sections_layers_fill_in(engine, session):
    engine.info.add("keyspace", lambda: {"db0": "keys=2,expires=0,avg_ttl=0"})
    engine.info.add("kvcache", lambda: [("hits", 5)], title="Kvcache")
    text = run(engine, session, "INFO").text.decode()
    assert text.startswith("# Server\r\nredis_version:7.0.15\r\n")
    assert "\r\n\r\n# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n" in text
    assert text.endswith("# Kvcache\r\nhits:5\r\n")
    only = run(engine, session, "INFO", "keyspace").text.decode()
    assert only == "# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n"
    assert run(engine, session, "INFO", "nosuch").text == b""
    stats = run(engine, session, "INFO", "stats", "clients").text.decode()
    assert "connected_clients:1" in stats
    assert "total_commands_processed:" in stats


def test_command_count_docs_info(engine, session):
    count = run(engine, session, "COMMAND", "COUNT")
    assert count == len(engine.table) > 10
    docs = run(engine, session, "COMMAND", "DOCS", "get")
    assert docs == {
        b"get": {b"summary": b"Get the value of a key.", b"since": b"1.0.0", b"group": b"generic"}
    }
    assert b"client" in run(engine, session, "COMMAND", "DOCS")
    (info,) = run(engine, session, "COMMAND", "INFO", "get")
    assert info[:6] == [b"get", 2, {"fast", "readonly"}, 1, 1, 0]
    assert run(engine, session, "COMMAND", "INFO", "nosuch") == [None]
    assert len(run(engine, session, "COMMAND")) == count
    assert b"ping" in run(engine, session, "COMMAND", "LIST")


def test_http_request_to_a_resp_port_is_dropped(engine, session):
    from minisys.resp.engine import NO_REPLY

    assert run(engine, session, "POST", "/", "HTTP/1.1") is NO_REPLY
    assert session.closing


def test_layer_may_override_a_connection_command():
    table = CommandTable()

    @table.command("info", arity=-1)
    def my_info(session, argv):
        return b"mine"

    engine = Engine(table)
    assert engine.execute(engine.open_session(), [b"INFO"]) == b"mine"
    assert engine.execute(engine.open_session(), [b"PING"]) == "PONG"


def test_parse_helpers():
    assert parse_int(b"-12") == -12
    with pytest.raises(CommandError) as info:
        parse_int(b"1.5")
    assert info.value.message == ERR_NOT_INTEGER
    assert parse_float(b"1.5") == 1.5
    assert parse_float(b"-inf") == float("-inf")
    for bad in (b"nan", b" 1", b"x", b"1_0", b""):
        with pytest.raises(CommandError) as info:
            parse_float(bad)
        assert info.value.message == ERR_NOT_FLOAT


def test_null_array_encodes_like_redis():
    assert encode_reply(NULL_ARRAY, 2) == b"*-1\r\n"


def test_resolve_checks_without_running(engine):
    assert engine.resolve([b"GET", b"k"]).name == "get"
    assert engine.resolve([b"client", b"setname", b"x"]).fullname == "client|setname"
    assert engine.resolve([b"GET"]) == RespError("ERR wrong number of arguments for 'get' command")
    assert engine.resolve([b"NOPE"]).message.startswith("ERR unknown command 'NOPE'")
    assert engine.total_commands == 0


def test_codec_and_engine_stay_sans_io():
    """Everything but server.py and client.py must work without an event loop."""
    import subprocess
    import sys

    modules = [
        "codec",
        "encoder",
        "inline",
        "reply_parser",
        "values",
        "engine",
        "connection_commands",
        "config_params",
        "info",
        "url",
    ]
    code = "; ".join(f"import minisys.resp.{m}" for m in modules)
    code += "; import sys; print('asyncio' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.strip() == "False"
