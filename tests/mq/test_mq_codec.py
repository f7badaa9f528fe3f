"""The sans-I/O codec: whole, byte by byte, with trailing data; and PROTOCOL.md's examples.

Replies against the real beanstalkd live in test_mq_protocol.py; here the codec alone.
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from minisys.beanstalk.codec import (
    BAD_FORMAT,
    EXPECTED_CRLF,
    JOB_TOO_BIG,
    UNKNOWN_COMMAND,
    Command,
    Reject,
    ReplyParser,
    encode_command,
    encode_put,
    parse_yaml,
)
from minisys.beanstalk.commands import _PREFIX_ORDER, _PUT_HEADERS, CommandParser, parse_line
from mq.records import encode_delete

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "mq" / "PROTOCOL.md"

CASES = [
    (b"put 1 2 3 5\r\nhello\r\n", Command("put", (1, 2, 3), b"hello")),
    (b"put 0 0 0 0\r\n\r\n", Command("put", (0, 0, 0), b"")),
    (b"put 4294967295 0 1 2\r\n\r\n\r\n", Command("put", (4294967295, 0, 1), b"\r\n")),
    (b"reserve\r\n", Command("reserve")),
    (b"reserve-with-timeout 0\r\n", Command("reserve-with-timeout", (0,))),
    (b"reserve-job 9\r\n", Command("reserve-job", (9,))),
    (b"delete 18446744073709551615\r\n", Command("delete", (2**64 - 1,))),
    (b"release 1 2 3\r\n", Command("release", (1, 2, 3))),
    (b"release  1  2  3\r\n", Command("release", (1, 2, 3))),
    (b"bury 1 2\r\n", Command("bury", (1, 2))),
    (b"touch 7\r\n", Command("touch", (7,))),
    (b"kick 10\r\n", Command("kick", (10,))),
    (b"kick -1\r\n", Command("kick", (2**32 - 1,))),
    (b"kick-job 3\r\n", Command("kick-job", (3,))),
    (b"use emails\r\n", Command("use", ("emails",))),
    (b"watch a(b)\r\n", Command("watch", ("a(b)",))),
    (b"ignore x\r\n", Command("ignore", ("x",))),
    (b"peek 1\r\n", Command("peek", (1,))),
    (b"peek-ready\r\n", Command("peek-ready")),
    (b"peek-delayed\r\n", Command("peek-delayed")),
    (b"peek-buried\r\n", Command("peek-buried")),
    (b"stats\r\n", Command("stats")),
    (b"stats-job 1\r\n", Command("stats-job", (1,))),
    (b"stats-tube t\r\n", Command("stats-tube", ("t",))),
    (b"list-tubes\r\n", Command("list-tubes")),
    (b"list-tube-used\r\n", Command("list-tube-used")),
    (b"list-tubes-watched\r\n", Command("list-tubes-watched")),
    (b"pause-tube t 10\r\n", Command("pause-tube", ("t", 10))),
    (b"quit\r\n", Command("quit")),
    (b"quit now\r\n", Command("quit")),
    (b"put 1 0 1 3\r\nabcde", Reject(EXPECTED_CRLF, burns_id=True)),
    (b"put 1 0 1 70000\r\n" + b"x" * 70002, Reject(JOB_TOO_BIG)),
    (b"put 1 0 1 70000 junk\r\n" + b"x" * 70002, Reject(JOB_TOO_BIG)),
    (b"put 1 0 1 5 junk\r\n", Reject(BAD_FORMAT)),
    (b"statsx\r\n", Reject(BAD_FORMAT)),
    (b"delete\r\n", Reject(UNKNOWN_COMMAND)),
    (b"delete 1x\r\n", Reject(BAD_FORMAT)),
    (b"use -x\r\n", Reject(BAD_FORMAT)),
    (b"x" * 300 + b"\r\n", Reject(BAD_FORMAT)),
]


def parse_all(data: bytes, chunk: int | None = None) -> list:
    parser = CommandParser()
    out = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        parser.feed(piece)
        while (cmd := parser.next_command()) is not None:
            out.append(cmd)
    return out


def test_every_case_whole_bytewise_and_with_trailing_data():
    for data, expected in CASES:
        assert parse_all(data) == [expected], data
        assert parse_all(data + b"stats\r\n") == [expected, Command("stats")], data
        if len(data) < 400:
            assert parse_all(data, chunk=1) == [expected], data


WORDS = [w.decode() for w in _PREFIX_ORDER] + ["put", "reserve-with-timeout", "x", ""]
ARGS = ["0", "7", "007", "-1", "18446744073709551616", "123456789012345678901", "a", "", " "]
ARGS += ["(b)", "1\r"]


@given(
    word=st.sampled_from(WORDS),
    args=st.lists(
        st.sampled_from(ARGS),
        max_size=3,
    ),
    sep=st.sampled_from([" ", "  "]),
)
def test_fast_paths_answer_as_parse_line_does(word, args, sep):
    # The parser's shortcuts (whole-packet lookup, `delete <id>`, one-id regex, put regex) must give
    # exactly what the general path gives, alone, after another command, and bytewise.
    line = (word.strip() + sep + sep.join(args)).rstrip(" ").encode()
    if line.startswith(b"put "):
        return  # a put's header is followed by a body: CASES and the put tests cover it
    expected = parse_line(line)
    assert parse_all(line + b"\r\n") == [expected], line
    assert parse_all(b"stats\r\n" + line + b"\r\n") == [Command("stats"), expected], line
    assert parse_all(line + b"\r\n", chunk=1) == [expected], line


@given(
    numbers=st.lists(st.sampled_from([0, 1, 5, 1024, 2**32 - 1, 2**32]), min_size=4, max_size=4),
    max_job_size=st.sampled_from([0, 3, 5, 65535]),
    chunk=st.sampled_from([None, 1, 7]),
)
def test_a_put_header_seen_before_parses_as_the_first_time(numbers, max_job_size, chunk):
    # The second put with the same header line comes from the parser's memo
    # (_PUT_HEADERS), the first one from the regex path: they must agree, whatever the
    # connection's max job size and however the bytes arrive.
    pri, delay, ttr, size = numbers
    size = min(size, 5)
    data = b"put %d %d %d %d\r\n" % (pri, delay, ttr, size) + b"x" * size + b"\r\n"

    def parse(stream: bytes) -> list:
        parser = CommandParser(max_job_size)
        pieces = (
            [stream]
            if chunk is None
            else [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
        )
        out = []
        for piece in pieces:
            parser.feed(piece)
            while (cmd := parser.next_command()) is not None:
                out.append(cmd)
        return out

    stream = data + data + b"stats\r\n"
    _PUT_HEADERS.clear()
    cold = parse(stream)  # the first put through the regex path, which fills the memo
    assert parse(stream) == cold  # now both from the memo


def test_incomplete_input_waits():
    parser = CommandParser()
    parser.feed(b"put 1 0 1 5\r\nhel")
    assert parser.next_command() is None and parser.in_body
    parser.feed(b"lo\r")
    assert parser.next_command() is None
    parser.feed(b"\n")
    assert parser.next_command() == Command("put", (1, 0, 1), b"hello")


@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    cuts=st.lists(st.integers(1, 50), max_size=30),
)
def test_puts_survive_any_split(bodies, cuts):
    stream = b"".join(encode_put(i, 0, 60, b) for i, b in enumerate(bodies))
    parser = CommandParser()
    got = []
    pos = 0
    for cut in [*cuts, len(stream)]:
        parser.feed(stream[pos : pos + cut])
        pos += cut
        while (cmd := parser.next_command()) is not None:
            got.append(cmd.body)
    parser.feed(stream[pos:])
    while (cmd := parser.next_command()) is not None:
        got.append(cmd.body)
    assert got == bodies


def test_reply_parser_bytewise():
    data = b"INSERTED 5\r\nRESERVED 5 3\r\na\r\n\r\nOK 10\r\n---\nid: 1\n\r\nNOT_FOUND\r\n"
    parser = ReplyParser()
    replies = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        while (r := parser.next_reply()) is not None:
            replies.append(r)
    assert [r.word for r in replies] == ["INSERTED", "RESERVED", "OK", "NOT_FOUND"]
    assert replies[1].body == b"a\r\n" and replies[1].args == (b"5", b"3")
    assert parse_yaml(replies[2].body) == {"id": "1"}


def test_encoders():
    assert encode_put(1, 2, 3, b"ab") == b"put 1 2 3 2\r\nab\r\n"
    assert encode_command("release", 7, 1024, 0) == b"release 7 1024 0\r\n"
    assert encode_command("stats") == b"stats\r\n"
    assert parse_yaml(b'---\nversion: "1.12"\nname: x\n') == {"version": "1.12", "name": "x"}
    assert parse_yaml(b"---\n- a\n- b\n") == ["a", "b"]


def _unescape(text: str) -> bytes:
    return text.encode().decode("unicode_escape").encode("latin-1")


def _examples() -> list[tuple[bytes, bytes, list[bytes]]]:
    """(request, reply, hex-dumped bytes) for every example block of PROTOCOL.md."""
    blocks = re.findall(r"```\n(.*?)```", PROTOCOL_MD.read_text(), re.S)
    out = []
    for block in blocks:
        lines = block.splitlines()
        if not lines or not lines[0].startswith("example: "):
            continue
        request = _unescape(lines[0][len("example: ") :].split("  ")[0].strip())
        reply = b""
        dumps = []
        for line in lines[1:]:
            if line.startswith("reply: "):
                reply = _unescape(line[len("reply: ") :].strip().split("  ")[0])
            elif re.match(r"  ([0-9a-f]{2} )+", line):
                dumps.append(bytes.fromhex(line.strip().split("  ")[0]))
        out.append((request, reply, dumps))
    return out


def test_protocol_md_examples_run_as_documented():
    from mq.server import BeanstalkConnection, MqApp

    class FakeServer:
        draining = False

    examples = _examples()
    assert len(examples) >= 5
    ours, peer = socket.socketpair()
    peer.setblocking(False)

    def received() -> bytes:
        data = b""
        while True:
            try:
                data += peer.recv(1 << 16)
            except BlockingIOError:
                return data

    async def run() -> None:
        app = MqApp()
        conn = BeanstalkConnection(app)
        conn.server = FakeServer()
        conn.sock, conn.fd = ours, ours.fileno()
        conn.on_connect()
        for request, reply, dumps in examples:
            for dump in dumps:
                assert dump in request + reply
            conn.on_data(request)
            assert received() == reply, request

    try:
        asyncio.run(run())
    finally:
        ours.close()
        peer.close()


def test_protocol_md_journal_example():
    text = PROTOCOL_MD.read_text()
    line = next(x for x in text.splitlines() if x.startswith("journal: "))
    assert bytes.fromhex(line[len("journal: ") :]) == encode_delete(7)
