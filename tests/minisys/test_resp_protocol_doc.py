"""Every ```resp example in minisys/resp/PROTOCOL.md parses (and encodes) as it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from minisys.resp import (
    INCOMPLETE,
    ProtocolError,
    RespError,
    RespParser,
    SimpleString,
    Verbatim,
    encode_reply,
)

DOC = Path(__file__).resolve().parents[2] / "minisys" / "resp" / "PROTOCOL.md"
BLOCK = re.compile(r"```resp\n(.*?)```", re.S)
NAMESPACE = {"SimpleString": SimpleString, "RespError": RespError, "Verbatim": Verbatim}


def examples() -> list[dict[str, str]]:
    found = []
    for body in BLOCK.findall(DOC.read_text()):
        fields: dict[str, str] = {"title": body.splitlines()[0].lstrip("# ")}
        key = ""
        for line in body.splitlines()[1:]:
            if line.startswith("      ") and key == "hex":
                fields["hex"] += " " + line.strip()
                continue
            key, _, rest = line.partition(":")
            fields[key] = rest.strip()
        found.append(fields)
    return found


EXAMPLES = examples()


def test_the_document_has_examples_of_every_kind():
    kinds = {e["kind"] for e in EXAMPLES}
    assert kinds == {"command", "error", "reply2", "reply3"}
    assert len(EXAMPLES) >= 15


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["title"] for e in EXAMPLES])
def test_example(example):
    data = bytes.fromhex(example["hex"])
    spelled = example["text"].encode().decode("unicode_escape").encode("latin-1")
    assert data == spelled, "hex and text disagree"
    expected = eval(example["value"], dict(NAMESPACE))  # the doc is ours; values only
    parser = RespParser()
    parser.feed(data)
    kind = example["kind"]
    if kind == "command":
        assert parser.next_command() == expected
    elif kind == "error":
        with pytest.raises(ProtocolError) as info:
            while parser.next_command() is not None:
                pass
        assert info.value.message == expected
    else:
        value = parser.next_reply()
        assert value == expected and type(value) is type(expected)
        if parser.next_reply() is INCOMPLETE:  # a single reply: our encoder makes it
            proto = 3 if kind == "reply3" else 2
            assert encode_reply(expected, proto) == data
