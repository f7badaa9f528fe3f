"""Hypothesis properties of the RESP codec.

- encode → parse gives back any value (RESP3 exactly; RESP2 after Redis's downgrades);
- the same bytes fed in any split give the same values;
- arbitrary bytes give values or ProtocolError, nothing else, and the parser never holds
  more than its limits allow.
"""

from __future__ import annotations

import itertools
import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from minisys.resp import (
    INCOMPLETE,
    ProtocolError,
    Push,
    RespError,
    RespParser,
    SimpleString,
    Verbatim,
    encode_command,
    encode_reply,
)

line_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
)
scalars = st.one_of(
    st.binary(max_size=40),
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    line_text.map(SimpleString),
    st.text(max_size=20).map(lambda t: RespError("ERR " + t)),
    st.builds(Verbatim, st.sampled_from([b"txt", b"mkd"]), st.binary(max_size=20)),
)
set_members = st.one_of(st.binary(max_size=10), st.integers(min_value=2))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=3).map(Push),
        st.dictionaries(st.binary(max_size=8), inner, max_size=4),
        st.sets(set_members, max_size=4),
    ),
    max_leaves=20,
)


def same(a: object, b: object) -> bool:
    """Equality that also checks types (True is not 1, b"1" is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def as_resp2(value: object) -> object:
    """What a RESP2 client reads back for a value (Redis's RESP2 downgrades)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, Verbatim):
        return value.text
    if isinstance(value, RespError):
        return RespError(value.message.replace("\r", " ").replace("\n", " "))
    if isinstance(value, dict):
        return [as_resp2(x) for pair in value.items() for x in pair]
    if isinstance(value, (list, set)):
        return [as_resp2(x) for x in value]
    return value


def parse_all(chunks: list[bytes]) -> list[object]:
    parser = RespParser()
    out = []
    for chunk in chunks:
        parser.feed(chunk)
        while (value := parser.next_reply()) is not INCOMPLETE:
            out.append(value)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(values)
def test_resp3_round_trip(value):
    (parsed,) = parse_all([encode_reply(value, 3)])
    assert same(parsed, value)


@given(values)
def test_resp2_round_trip(value):
    (parsed,) = parse_all([encode_reply(value, 2)])
    assert same(parsed, as_resp2(value))


@given(st.lists(values, min_size=1, max_size=5), st.lists(st.integers(0, 10**6), max_size=8))
def test_any_split_gives_the_same_replies(items, cuts):
    data = b"".join(encode_reply(v, 3) for v in items)
    whole = parse_all([data])
    pieces = parse_all(split(data, cuts))
    assert len(whole) == len(items) == len(pieces)
    for a, b in zip(whole, pieces, strict=True):
        assert same(a, b)


commands = st.lists(st.lists(st.binary(max_size=30), min_size=1, max_size=6), max_size=6)
inline_token = st.binary(min_size=1, max_size=10).filter(
    lambda b: not any(c in b for c in b" \t\r\n\x0b\x0c\x00\"'")
)


def parse_commands(chunks: list[bytes]) -> list[list[bytes]]:
    parser = RespParser()
    out = []
    for chunk in chunks:
        parser.feed(chunk)
        while (cmd := parser.next_command()) is not None:
            out.append(cmd)
    return out


@given(commands, st.lists(st.integers(0, 10**6), max_size=8))
def test_commands_round_trip_in_any_split(cmds, cuts):
    data = b"".join(encode_command(*c) for c in cmds)
    assert parse_commands([data]) == cmds
    assert parse_commands(split(data, cuts)) == cmds


@given(st.lists(st.lists(inline_token, min_size=1, max_size=4), max_size=5), st.data())
def test_inline_commands_round_trip(lines, data):
    text = b"".join(
        b" ".join(line) + data.draw(st.sampled_from([b"\n", b"\r\n"])) for line in lines
    )
    if text.startswith(b"*"):
        return  # that would be a multibulk
    expected = [line for line in lines if not line[0].startswith(b"*")]
    if expected != lines:
        return
    assert parse_commands([text]) == lines


fragments = st.one_of(
    st.binary(max_size=20),
    st.sampled_from([b"*", b"$", b"\r\n", b"*1\r\n", b"$3\r\n", b"*-1\r\n", b"%", b"|", b"~"]),
    st.builds(lambda c: encode_command(*c), st.lists(st.binary(max_size=5), min_size=1)),
)


@settings(max_examples=150)
@given(st.lists(fragments, max_size=20), st.lists(st.integers(0, 10**6), max_size=8))
def test_garbage_gives_commands_or_protocol_error(parts, cuts):
    data = b"".join(parts)
    parser = RespParser(max_bulk=1000, max_inline=100, max_query=4000)
    try:
        for chunk in split(data, cuts):
            parser.feed(chunk)
            while (cmd := parser.next_command()) is not None:
                assert isinstance(cmd, list) and cmd
                assert all(type(arg) is bytes for arg in cmd)
            assert parser.buffered <= 4000
    except ProtocolError as exc:
        assert exc.message.startswith("Protocol error: ")


@settings(max_examples=150)
@given(st.lists(fragments, max_size=20), st.lists(st.integers(0, 10**6), max_size=8))
def test_garbage_gives_replies_or_protocol_error(parts, cuts):
    data = b"".join(parts)
    parser = RespParser(max_bulk=1000, max_inline=100, max_query=4000)
    try:
        for chunk in split(data, cuts):
            parser.feed(chunk)
            while parser.next_reply() is not INCOMPLETE:
                pass
            assert parser.buffered <= 4000
    except ProtocolError:
        pass


@given(st.binary(min_size=1, max_size=300), st.integers(1, 50))
def test_limits_bound_memory_for_endless_input(chunk, repeats):
    parser = RespParser(max_bulk=500, max_inline=200, max_query=2000)
    try:
        for _ in range(repeats):
            parser.feed(chunk)
            while parser.next_command() is not None:
                pass
            assert parser.buffered <= 2000
    except ProtocolError:
        pass


@given(st.text(max_size=10), st.sampled_from([2, 3]))
def test_any_text_can_be_encoded(text, proto):
    for value in (text, SimpleString(text), RespError(text)):
        assert encode_reply(value, proto).endswith(b"\r\n")


# Arguments that trip the split fast path up: CRLF inside, header- and count-like bytes,
# lengths around its 1024-entry header table.
tricky_args = st.one_of(
    st.binary(max_size=12),
    st.binary(max_size=12).filter(lambda b: b"\r\n" not in b),
    st.sampled_from([b"\r\n", b"a\r\nb", b"$3", b"*2", b"\r", b"\n", b"$1\r\nx", b"*1\r\n"]),
    st.integers(1020, 1030).map(lambda n: b"v" * n),
)
well_formed = st.builds(lambda c: encode_command(*c), st.lists(tricky_args, min_size=1, max_size=4))
odd_parts = st.one_of(
    st.sampled_from([b"PING\r\n", b"*0\r\n", b"*-1\r\n", b"$3\r\n", b"*2\r\n$3\r\nGET\r\n"]),
    st.sampled_from([b"*1\r\n$3\r\nabcde\r\n", b"*1\r\n$03\r\nabc\r\n", b"*01\r\n$1\r\na\r\n"]),
    st.binary(max_size=8),
)
# Mostly well-formed pipelines (what the split path takes), now and then something else.
stream_parts = st.one_of(well_formed, well_formed, well_formed, well_formed, odd_parts)


def drain(parser: RespParser, next_command, chunks: list[bytes]) -> list[object]:
    """Every command the parser returns, then the protocol error it stopped on (if any)."""
    out: list[object] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (cmd := next_command()) is not None:
                out.append(cmd)
    except ProtocolError as exc:
        out.append(("error", exc.message, exc.reply))
    return out


@settings(max_examples=150)
@given(st.lists(stream_parts, max_size=30), st.lists(st.integers(0, 10**6), max_size=4))
def test_fast_paths_agree_with_the_general_parser_on_any_split(parts, cuts):
    # next_command's fast paths (one short command; a pipeline split at CRLFs) against the
    # general state machine alone, on the same bytes cut at the same points.
    chunks = split(b"".join(parts), cuts)
    fast = RespParser()
    general = RespParser()
    assert drain(fast, fast.next_command, chunks) == drain(
        general, general._next_command_general, chunks
    )


clean_args = st.binary(max_size=20).filter(lambda b: b"\r\n" not in b)
pipelines = st.lists(
    st.one_of(
        st.lists(clean_args, min_size=1, max_size=4),
        st.lists(st.one_of(clean_args, tricky_args), min_size=1, max_size=4),
    ),
    min_size=2,
    max_size=40,
)


@settings(max_examples=100)
@given(pipelines, st.lists(st.integers(0, 10**6), max_size=3))
def test_split_path_reads_pipelines_as_the_general_parser_does(cmds, cuts):
    chunks = split(b"".join(encode_command(*c) for c in cmds), cuts)
    fast = RespParser()
    general = RespParser()
    got = drain(fast, fast.next_command, chunks)
    assert got == drain(general, general._next_command_general, chunks) == cmds


@settings(max_examples=150)
@given(
    st.lists(st.one_of(tricky_args, st.binary(max_size=3)), min_size=1, max_size=12),
    st.booleans(),
    st.sampled_from([b"", b"\r\n", b"*1\r\n", b"x"]),
)
@example([b"a"] * 10, False, b"")  # the most arguments Redis allows before AUTH
@example([b"a"] * 11, False, b"")  # one more: a protocol error
def test_one_short_command_per_read_is_read_as_the_general_parser_does(args, authed, tail):
    # The one-command fast path (a read of at most SPLIT_MIN_BYTES) against the general
    # state machine, before and after AUTH (when Redis allows at most ten arguments).
    chunks = [encode_command(*args) + tail]
    fast = RespParser()
    general = RespParser()
    fast.authenticated = general.authenticated = authed
    assert drain(fast, fast.next_command, chunks) == drain(
        general, general._next_command_general, chunks
    )
