"""Every hex example in minisys/http/PROTOCOL.md parses with our codec as the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from minisys.http.codec import (
    ConnectionClosed,
    EndOfMessage,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from minisys.http.head import HttpError

DOC = Path(__file__).resolve().parents[2] / "minisys" / "http" / "PROTOCOL.md"
BLOCK = re.compile(r"```hex (request|response|bad-request (\d{3}))\n(.*?)```", re.S)


def examples():
    text = DOC.read_text()
    found = []
    for m in BLOCK.finditer(text):
        data = b"".join(
            bytes.fromhex(line.split("  |")[0]) for line in m.group(3).splitlines() if line
        )
        found.append((m.group(1).split()[0], int(m.group(2) or 0), data))
    return found


def events(parser, data):
    parser.feed(data)
    parser.feed_eof()
    out = []
    while (event := parser.next_event()) is not None:
        out.append(event)
        if type(event) is ConnectionClosed:
            break
    return out


def test_the_page_has_examples():
    kinds = [k for k, _, _ in examples()]
    assert kinds.count("request") >= 2 and "response" in kinds and "bad-request" in kinds


@pytest.mark.parametrize(("kind", "status", "data"), examples())
def test_example_parses_as_documented(kind, status, data):
    if kind == "bad-request":
        with pytest.raises(HttpError) as info:
            events(RequestParser(), data)
        assert info.value.status == status
        return
    if kind == "request":
        out = events(RequestParser(), data)
        assert type(out[0]) is RequestHead
    else:
        parser = ResponseParser()
        parser.expect_response("GET")
        out = events(parser, data)
        assert type(out[0]) is ResponseHead
    assert [type(e) for e in out[-2:]] == [EndOfMessage, ConnectionClosed]
