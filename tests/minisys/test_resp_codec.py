"""RESP codec examples: requests whole, byte by byte, with trailing data; Redis's errors.

Each error text here was probed against Redis 7.0.15 (shared/specs/resp.md §1.4) and is
also checked against a real redis-server in tests/interop/test_resp_interop.py.
"""

from __future__ import annotations

import pytest

from minisys.resp import (
    INCOMPLETE,
    NULL_ARRAY,
    ProtocolError,
    Push,
    RespError,
    RespParser,
    SimpleString,
    Verbatim,
    encode_command,
    encode_reply,
)
from minisys.resp.codec import strict_int
from minisys.resp.inline import UnbalancedQuotes, split_inline


def commands(data: bytes, **limits: int) -> list[list[bytes]]:
    parser = RespParser(**limits)
    parser.feed(data)
    out = []
    while (cmd := parser.next_command()) is not None:
        out.append(cmd)
    return out


def commands_bytewise(data: bytes) -> list[list[bytes]]:
    parser = RespParser()
    out = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        while (cmd := parser.next_command()) is not None:
            out.append(cmd)
    return out


def protocol_error(data: bytes, **limits: int) -> str:
    with pytest.raises(ProtocolError) as info:
        commands(data, **limits)
    return info.value.message


PIPELINE = (
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n"
    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    b"PING\r\n"
    b"*1\r\n$4\r\nPING\r\n"
)
PIPELINE_ARGS = [[b"SET", b"k", b"hello"], [b"GET", b"k"], [b"PING"], [b"PING"]]


def test_pipeline_whole_and_byte_by_byte():
    assert commands(PIPELINE) == PIPELINE_ARGS
    assert commands_bytewise(PIPELINE) == PIPELINE_ARGS


def test_trailing_partial_command_waits():
    parser = RespParser()
    parser.feed(PIPELINE + b"*2\r\n$3\r\nGET\r\n$1\r")
    got = [parser.next_command() for _ in range(5)]
    assert got == [*PIPELINE_ARGS, None]
    parser.feed(b"\nx\r\n")
    assert parser.next_command() == [b"GET", b"x"]
    assert parser.next_command() is None


def test_binary_safe_bulk_with_crlf_inside():
    assert commands(b"*2\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n") == [[b"SET", b"a\r\nb"]]


def test_empty_bulk_and_empty_multibulk_skipped():
    assert commands(b"*0\r\n*-1\r\n*1\r\n$0\r\n\r\n") == [[b""]]


def test_inline_forms():
    data = b"PING\nSET k \"hello world\"\r\n\r\n\n  ECHO  'a b'  \r\n"
    assert commands(data) == [[b"PING"], [b"SET", b"k", b"hello world"], [b"ECHO", b"a b"]]
    assert commands_bytewise(data) == commands(data)


def test_big_bulk_in_many_reads_is_joined_once():
    value = b"v" * 200_000
    data = encode_command("SET", "k", value)
    parser = RespParser()
    for i in range(0, len(data), 1000):
        parser.feed(data[i : i + 1000])
        if i + 1000 < len(data):
            assert parser.next_command() is None
    assert parser.next_command() == [b"SET", b"k", value]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"*abc\r\n", "Protocol error: invalid multibulk length"),
        (b"*2147483648\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\r\n+PING\r\n", "Protocol error: expected '$', got '+'"),
        (b"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$600000000\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$05\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$ 5\r\n", "Protocol error: invalid bulk length"),
        (b'SET k "abc\r\n', "Protocol error: unbalanced quotes in request"),
        (b'SET k "abc"def\r\n', "Protocol error: unbalanced quotes in request"),
    ],
)
def test_protocol_errors_have_redis_texts(data, message):
    assert protocol_error(data) == message


def test_commands_before_a_protocol_error_are_returned_first():
    parser = RespParser()
    parser.feed(b"PING\r\n*x\r\n")
    assert parser.next_command() == [b"PING"]
    with pytest.raises(ProtocolError):
        parser.next_command()


def test_size_limits():
    assert protocol_error(b"A" * 70_000) == "Protocol error: too big inline request"
    assert protocol_error(b"*" + b"1" * 70_000) == "Protocol error: too big mbulk count string"
    long_count = b"*1\r\n$" + b"1" * 70_000
    assert protocol_error(long_count) == "Protocol error: too big bulk count string"
    assert protocol_error(b"*1\r\n$11\r\n", max_bulk=10) == "Protocol error: invalid bulk length"
    # Just under the limits still waits for more bytes instead of failing.
    assert commands(b"A" * 60_000) == []


def test_query_buffer_limit_closes_without_reply():
    parser = RespParser(max_query=1000)
    parser.feed(b"*2\r\n$3\r\nSET\r\n$5000\r\n" + b"x" * 999)
    parser.feed(b"x" * 10)
    with pytest.raises(ProtocolError) as info:
        parser.next_command()
    assert info.value.reply is False


def test_unauthenticated_clients_get_small_limits():
    parser = RespParser()
    parser.authenticated = False
    parser.feed(b"*11\r\n")
    with pytest.raises(ProtocolError, match="unauthenticated multibulk length"):
        parser.next_command()
    parser = RespParser()
    parser.authenticated = False
    parser.feed(b"*1\r\n$16385\r\n")
    with pytest.raises(ProtocolError, match="unauthenticated bulk length"):
        parser.next_command()


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b"", []),
        (b"   ", []),
        (b"a b\tc", [b"a", b"b", b"c"]),
        (b'"a b" c', [b"a b", b"c"]),
        (b'"\\x41\\x4a\\n\\t\\"\\\\"', [b'AJ\n\t"\\']),
        (b'"\\xZZ"', [b"xZZ"]),
        (b"'it\\'s' '\\n'", [b"it's", b"\\n"]),
        (b'""', [b""]),
        (b'a"b c"d', None),  # closing quote glued to more text
        (b'x"y z" w', [b"xy z", b"w"]),
        (b"a\x0bb c", [b"a\x0bb", b"c"]),  # VT is not a token end inside a token
        (b"a\x00b c", [b"a"]),  # NUL ends the C string
        (b"'open", None),
    ],
)
def test_inline_splitting_like_sdssplitargs(line, args):
    if args is None:
        with pytest.raises(UnbalancedQuotes):
            split_inline(line)
    else:
        assert split_inline(line) == args


@pytest.mark.parametrize(
    ("text", "value"),
    [(b"0", 0), (b"-7", -7), (b"123", 123), (b"9223372036854775807", 2**63 - 1)],
)
def test_strict_int_accepts(text, value):
    assert strict_int(text) == value


@pytest.mark.parametrize(
    "text", [b"", b"-", b"+1", b" 1", b"1 ", b"01", b"-0", b"1_0", b"9223372036854775808", b"x"]
)
def test_strict_int_rejects(text):
    assert strict_int(text) is None


def test_encode_command():
    assert encode_command("SET", b"k", 5, 1.5) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n$3\r\n1.5\r\n"
    )
    with pytest.raises(TypeError):
        encode_command("SET", "k", True)


@pytest.mark.parametrize(
    ("value", "resp2", "resp3"),
    [
        (SimpleString("OK"), b"+OK\r\n", b"+OK\r\n"),
        (RespError("ERR x"), b"-ERR x\r\n", b"-ERR x\r\n"),
        (RespError("ERR a\r\nb"), b"-ERR a  b\r\n", b"!8\r\nERR a\r\nb\r\n"),
        (b"hi", b"$2\r\nhi\r\n", b"$2\r\nhi\r\n"),
        ("é", b"$2\r\n\xc3\xa9\r\n", b"$2\r\n\xc3\xa9\r\n"),
        (None, b"$-1\r\n", b"_\r\n"),
        (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
        (-2, b":-2\r\n", b":-2\r\n"),
        (2**64, b"$20\r\n18446744073709551616\r\n", b"(18446744073709551616\r\n"),
        (True, b":1\r\n", b"#t\r\n"),
        (False, b":0\r\n", b"#f\r\n"),
        (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (float("inf"), b"$3\r\ninf\r\n", b",inf\r\n"),
        ([], b"*0\r\n", b"*0\r\n"),
        ([b"a", 1, None], b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n", b"*3\r\n$1\r\na\r\n:1\r\n_\r\n"),
        ({b"k": 1}, b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
        ({b"m"}, b"*1\r\n$1\r\nm\r\n", b"~1\r\n$1\r\nm\r\n"),
        (Verbatim(b"txt", b"hi"), b"$2\r\nhi\r\n", b"=6\r\ntxt:hi\r\n"),
        (Push([b"a"]), b"*1\r\n$1\r\na\r\n", b">1\r\n$1\r\na\r\n"),
    ],
)
def test_encode_reply_resp2_and_resp3(value, resp2, resp3):
    assert encode_reply(value, 2) == resp2
    assert encode_reply(value, 3) == resp3


def test_encode_reply_rejects_unknown_types():
    with pytest.raises(TypeError):
        encode_reply(object())


def replies(data: bytes) -> list[object]:
    parser = RespParser()
    parser.feed(data)
    out = []
    while (value := parser.next_reply()) is not INCOMPLETE:
        out.append(value)
    return out


def test_reply_parser_all_types():
    data = (
        b"+OK\r\n-ERR bad\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*2\r\n:1\r\n*1\r\n_\r\n"
        b"#t\r\n#f\r\n,1.25\r\n,-inf\r\n(12345678901234567890\r\n!5\r\nERR x\r\n"
        b"=7\r\ntxt:abc\r\n%1\r\n+k\r\n~1\r\n:1\r\n~2\r\n:1\r\n:2\r\n>2\r\n$3\r\nmsg\r\n:0\r\n"
        b"|1\r\n+ttl\r\n:5\r\n$1\r\nv\r\n$?\r\n;2\r\nab\r\n;1\r\nc\r\n;0\r\n"
        b"*?\r\n:1\r\n:2\r\n.\r\n"
    )
    assert replies(data) == [
        SimpleString("OK"),
        RespError("ERR bad"),
        42,
        b"abc",
        None,
        None,
        [1, [None]],
        True,
        False,
        1.25,
        float("-inf"),
        12345678901234567890,
        RespError("ERR x"),
        Verbatim(b"txt", b"abc"),
        {"k": {1}},
        {1, 2},
        Push([b"msg", 0]),
        b"v",
        b"abc",
        [1, 2],
    ]


def test_reply_attribute_is_kept_aside():
    parser = RespParser()
    parser.feed(b"|1\r\n+ttl\r\n:5\r\n$1\r\nv\r\n")
    assert parser.next_reply() == b"v"
    assert parser.attributes == {"ttl": 5}


def test_reply_map_with_aggregate_keys_stays_hashable():
    assert replies(b"%1\r\n*1\r\n:1\r\n:2\r\n") == [{(1,): 2}]


@pytest.mark.parametrize(
    "data",
    [
        b"?x\r\n",
        b":1x\r\n",
        b"#x\r\n",
        b",1.2.3\r\n",
        b"_x\r\n",
        b"$2\r\nabc\r\n",
        b"=2\r\nab\r\n",
        b"%1\r\n:1\r\n" + b"" + b"*1\r\n" * 100 + b":1\r\n",
    ],
)
def test_reply_garbage_is_a_protocol_error(data):
    with pytest.raises(ProtocolError):
        replies(data)


def test_big_nested_reply_in_many_pieces():
    value = [[b"k%d" % i, i, None] for i in range(20_000)]
    data = encode_reply(value, 3)
    parser = RespParser()
    got = []
    for i in range(0, len(data), 4096):
        parser.feed(data[i : i + 4096])
        while (reply := parser.next_reply()) is not INCOMPLETE:
            got.append(reply)
    assert got == [value]
