"""The sans-I/O HTTP codec: exact parses, every split, round trips, and only HttpError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minisys.http.codec import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from minisys.http.framing import LAST_CHUNK, encode_chunk
from minisys.http.head import Headers, HttpError, Limits
from minisys.http.serialize import (
    request_head,
    response_head,
    serialize_request,
    serialize_response,
)
from minisys.http.testkit import VECTORS


def parse_all(parser, chunks, eof=True):
    """Feed `chunks`, collect events with Data merged per message; errors become the last item."""
    out = []

    def drain():
        while (event := parser.next_event()) is not None:
            if type(event) is Data and out and type(out[-1]) is Data:
                out[-1] = Data(out[-1].data + event.data)
            else:
                out.append(event)
            if type(event) is ConnectionClosed:
                return

    try:
        for chunk in chunks:
            parser.feed(chunk)
            drain()
        if eof:
            parser.feed_eof()
            drain()
    except HttpError as exc:
        out.append(exc)
    return out


def requests(data: bytes, split: int | None = None, limits: Limits | None = None):
    chunks = [data] if split is None else [data[i : i + split] for i in range(0, len(data), split)]
    return parse_all(RequestParser(limits or Limits()), chunks)


def test_simple_get_then_clean_close():
    events = requests(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.version) == ("GET", "/a?b=1", "1.1")
    assert head.headers.get("host") == "x" and head.headers["ACCEPT"] == "*/*"
    assert head.keep_alive and not head.expect_continue and head.content_length == 0
    assert [type(e) for e in events[1:]] == [EndOfMessage, ConnectionClosed]


def test_body_by_content_length_and_pipelining():
    data = (
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    for split in (None, 1, 3, 7):
        events = requests(data, split)
        assert [type(e) for e in events] == [
            RequestHead, Data, EndOfMessage, RequestHead, EndOfMessage, ConnectionClosed,
        ]  # fmt: skip
        assert events[1].data == b"hello"
        assert events[3].target == "/y" and not events[3].keep_alive


def test_chunked_body_with_extensions_and_trailers():
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nX-Sum: 1\r\nHost: evil\r\n\r\n"
    )
    for split in (None, 1, 2, 5):
        events = requests(data, split)
        assert events[0].content_length == -1
        assert events[1].data == b"hello" + b"z" * 26
        # Framing-relevant fields in a trailer are dropped, never merged.
        assert events[2].trailers == Headers([("X-Sum", "1")])


def test_http10_keep_alive_rules():
    (head, *_) = requests(b"GET / HTTP/1.0\r\n\r\n")
    assert head.version == "1.0" and not head.keep_alive
    (head, *_) = requests(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert head.keep_alive
    (head, *_) = requests(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n")
    assert not head.keep_alive


def test_leading_empty_lines_and_bare_lf_head_accepted_like_nginx():
    events = requests(b"\r\n\nGET / HTTP/1.1\nHost: x\n\n")
    assert events[0].target == "/" and events[0].headers["host"] == "x"


def test_expect_continue_only_on_11_with_a_body():
    (head, *_) = requests(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx"
    )
    assert head.expect_continue
    (head, *_) = requests(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx")
    assert not head.expect_continue


# Malformed and smuggling vectors (shared with the server and nginx-parity tests), plus a
# head cut short by EOF, which only a parser can see.
BAD = [(name, data, status) for name, data, status, _ in VECTORS]
BAD.append(("head cut by EOF", b"GET / HTTP/1.1\r\nHo", 400))


@pytest.mark.parametrize(("name", "data", "status"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_the_right_status(name, data, status):
    for split in (None, 1):
        events = requests(data, split)
        assert isinstance(events[-1], HttpError), events
        assert events[-1].status == status, (split, events[-1])


def test_error_is_sticky():
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nX : y\r\n\r\n")
    for _ in range(2):
        with pytest.raises(HttpError):
            parser.next_event()


# --- responses ------------------------------------------------------------------------


def responses(data: bytes, methods=("GET",), split=None):
    parser = ResponseParser()
    for m in methods:
        parser.expect_response(m)
    chunks = [data] if split is None else [data[i : i + split] for i in range(0, len(data), split)]
    return parse_all(parser, chunks)


def test_response_framings():
    ev = responses(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert ev[0].status == 200 and ev[1].data == b"hi" and type(ev[2]) is EndOfMessage
    ev = responses(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    assert ev[1].data == b"hi"
    ev = responses(b"HTTP/1.0 200 OK\r\n\r\nuntil close", split=3)
    assert ev[0].content_length == -2 and ev[1].data == b"until close"
    assert type(ev[2]) is EndOfMessage
    ev = responses(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", methods=("HEAD",))
    assert [type(e) for e in ev] == [ResponseHead, EndOfMessage, ConnectionClosed]
    ev = responses(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")
    assert [type(e) for e in ev] == [ResponseHead, EndOfMessage, ConnectionClosed]


def test_informational_response_precedes_final_one():
    ev = responses(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert [e.status for e in ev if type(e) is ResponseHead] == [100, 204]
    assert sum(type(e) is EndOfMessage for e in ev) == 1


def test_bad_response_is_a_502():
    ev = responses(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert isinstance(ev[-1], HttpError) and ev[-1].status == 502
    ev = responses(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    assert isinstance(ev[-1], HttpError) and ev[-1].status == 502


# --- serializer -------------------------------------------------------------------------


def test_serializer_refuses_header_injection():
    with pytest.raises(ValueError):
        serialize_response(200, [("X-A", "a\r\nSet-Cookie: x=1")])
    with pytest.raises(ValueError):
        serialize_response(200, [("X A", "1")])
    with pytest.raises(ValueError):
        request_head("GET", "/a b", [])


def test_serialize_response_framing():
    assert serialize_response(200, [], b"hi") == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    assert serialize_response(204, [], b"x") == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert serialize_response(200, [], b"hi", send_body=False).endswith(
        b"Content-Length: 2\r\n\r\n"
    )
    assert encode_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"


# --- properties -----------------------------------------------------------------------

tokens = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~",
    min_size=1,
    max_size=12,
)
names = tokens.filter(
    lambda n: (
        n.lower() not in {"host", "content-length", "transfer-encoding", "connection", "expect"}
    )
)
# Visible latin-1 with inner spaces; leading/trailing whitespace is not part of a value.
values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=20
).map(lambda v: v.strip(" "))
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "MKCOL"])
targets = st.text("abcdefghijklmnopqrstuvwxyz0123456789/?=&%-._~", max_size=30).map(
    lambda t: "/" + t
)


@st.composite
def request_messages(draw):
    method = draw(methods)
    target = draw(targets)
    headers = [("Host", "example"), *draw(st.lists(st.tuples(names, values), max_size=6))]
    body = draw(st.binary(max_size=300))
    if draw(st.booleans()) and body:
        pieces = draw(st.lists(st.binary(min_size=1, max_size=50), max_size=5))
        wire = request_head(method, target, [*headers, ("Transfer-Encoding", "chunked")])
        wire += b"".join(encode_chunk(p) for p in pieces) + LAST_CHUNK
        body = b"".join(pieces)
    else:
        wire = serialize_request(method, target, headers, body)
    return method, target, headers, body, wire


def summarize(events):
    out = []
    for e in events:
        if type(e) is RequestHead:
            hs = [
                (n, v)
                for n, v in e.headers
                if n.lower() not in ("content-length", "transfer-encoding")
            ]
            out.append(("head", e.method, e.target, hs))
        elif type(e) is Data:
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + e.data)
            else:
                out.append(("data", e.data))
        elif type(e) is EndOfMessage:
            out.append(("end",))
        elif type(e) is ConnectionClosed:
            out.append(("closed",))
        else:
            out.append(("error", e.status))
    return out


@given(request_messages())
def test_round_trip(message):
    method, target, headers, body, wire = message
    events = summarize(requests(wire))
    expected = [("head", method, target, headers)]
    if body:
        expected.append(("data", body))
    assert events == [*expected, ("end",), ("closed",)]


@given(st.lists(request_messages(), min_size=1, max_size=4), st.data())
def test_any_split_of_a_pipelined_stream_parses_identically(messages, data):
    wire = b"".join(m[4] for m in messages)
    whole = summarize(requests(wire))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    assert summarize(parse_all(RequestParser(), chunks)) == whole
    assert sum(1 for e in whole if e[0] == "end") == len(messages)


@given(st.binary(max_size=400), st.integers(1, 50))
def test_arbitrary_bytes_raise_only_http_error(data, split):
    # parse_all turns HttpError into an item; anything else would escape and fail the test.
    requests(data, split)
    parse_all(ResponseParser(), [data[i : i + split] for i in range(0, len(data), split)])


@given(
    st.lists(
        st.sampled_from(
            [
                b"GET / HTTP/1.1\r\n",
                b"Host: x\r\n",
                b"\r\n",
                b"Content-Length: 3\r\n",
                b"Transfer-Encoding: chunked\r\n",
                b"3\r\nabc\r\n",
                b"0\r\n",
                b"\n",
                b"\r",
                b" ",
                b":",
                b"x",
            ]
        ),
        max_size=20,
    )
)
def test_arbitrary_http_shaped_bytes_raise_only_http_error(parts):
    requests(b"".join(parts), 1)
    requests(b"".join(parts))


@settings(max_examples=50)
@given(st.integers(1, 4096))
def test_head_arriving_byte_by_byte(size):
    parser = RequestParser()
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * size + b"\r\n\r\n"
    for i in range(len(head)):
        parser.feed(head[i : i + 1])
        event = parser.next_event()
    assert isinstance(event, RequestHead)


statuses = st.sampled_from([200, 201, 204, 301, 304, 400, 404, 418, 500, 503])


@st.composite
def response_messages(draw):
    status = draw(statuses)
    headers = draw(st.lists(st.tuples(names, values), max_size=5))
    body = b"" if status in (204, 304) else draw(st.binary(max_size=200))
    if draw(st.booleans()) and body:
        pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
        wire = response_head(status, [*headers, ("Transfer-Encoding", "chunked")])
        wire += b"".join(encode_chunk(p) for p in pieces) + LAST_CHUNK
    else:
        wire = serialize_response(status, headers, body)
    return status, headers, body, wire


def summarize_responses(events):
    out = []
    for e in events:
        if type(e) is ResponseHead:
            hs = [
                (n, v)
                for n, v in e.headers
                if n.lower() not in ("content-length", "transfer-encoding")
            ]
            out.append(("head", e.status, hs))
        elif type(e) is Data:
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + e.data)
            else:
                out.append(("data", e.data))
        elif type(e) is EndOfMessage:
            out.append(("end",))
        elif isinstance(e, HttpError):
            out.append(("error", e.status))
    return out


@given(st.lists(response_messages(), min_size=1, max_size=4), st.data())
def test_responses_round_trip_in_any_split(messages, data):
    wire = b"".join(m[3] for m in messages)
    expected = []
    for status, headers, body, _ in messages:
        expected.append(("head", status, headers))
        if body:
            expected.append(("data", body))
        expected.append(("end",))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    parser = ResponseParser()
    for _ in messages:
        parser.expect_response("GET")
    assert summarize_responses(parse_all(parser, chunks)) == expected


@given(st.lists(response_messages(), min_size=1, max_size=4), st.data())
def test_next_response_gives_whole_responses_in_any_split(messages, data):
    wire = b"".join(m[3] for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    parser = ResponseParser()
    for _ in messages:
        parser.expect_response("GET")
    got = []
    for chunk in chunks:
        parser.feed(chunk)
        while (message := parser.next_response()) is not None:
            got.append(message)
    parser.feed_eof()
    assert parser.next_response() is None and parser.closed
    assert [(head.status, body) for head, body in got] == [(m[0], m[2]) for m in messages]


def test_next_response_skips_interim_responses():
    parser = ResponseParser()
    parser.expect_response("POST")
    parser.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    head, body = parser.next_response()
    assert (head.status, body) == (201, b"ok")
    assert parser.next_response() is None and not parser.closed


# Bytes that matter to a field line's grammar: token chars, the colon, whitespace, and the
# bytes no field line may hold (NUL, CR, LF, DEL), plus obs-text.
FIELD_ALPHABET = st.sampled_from(list(b"Ab-_!~:: \t\x00\r\x7f\x80\xff0z,;"))


@given(
    name=st.sampled_from([b"Host", b"X-Key", b"content-length", b"A b", b" Fold", b""]),
    rest=st.lists(FIELD_ALPHABET, max_size=12).map(bytes),
)
def test_field_line_short_way_agrees_with_the_grammar(name, rest):
    """parse_fields' short way (known name, allowed bytes, strip) == FIELD_LINE_RE, both
    for a name seen before (the short way) and the first time (the regex)."""
    from minisys.http.head import FIELD_LINE_RE, parse_fields

    line = name + b":" + rest
    m = FIELD_LINE_RE.fullmatch(line)
    for _ in range(2):  # the second round finds the name known, if it was valid
        if m is None:
            with pytest.raises(HttpError) as caught:
                parse_fields([line], 0, Limits())
            assert caught.value.status == 400
        else:
            headers, found = parse_fields([line], 0, Limits())
            value = m.group(2)
            assert headers.items() == [(m.group(1).decode("latin-1"), value.decode("latin-1"))]
            framing = m.group(1).lower() in (b"host", b"content-length")
            assert found == ({m.group(1).lower(): [value]} if framing else {})
