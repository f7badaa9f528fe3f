"""FORMAT.md's hex examples decode to what they say, and encoding reproduces them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from minidb import record
from minidb.hint import decode_hint, encode_hint

FORMAT = Path(__file__).resolve().parents[2] / "minidb" / "FORMAT.md"
BLOCK = re.compile(r"```\n((?:example|hint): [^\n]*)\n(.*?)```", re.S)


def _examples(kind: str) -> list[tuple[dict[str, str], bytes]]:
    out = []
    for head, body in BLOCK.findall(FORMAT.read_text()):
        name, _, fields = head.partition(": ")
        if name == kind:
            attrs = dict(f.split("=", 1) for f in fields.split())
            out.append((attrs, bytes.fromhex(body.replace("\n", " "))))
    return out


@pytest.mark.parametrize("attrs,data", _examples("example"))
def test_record_examples(attrs, data):
    rec = record.decode_at(data, 0)
    assert rec.flags == int(attrs["flags"], 16)
    assert rec.timestamp_ms == int(attrs["timestamp"])
    assert rec.key == attrs["key"].encode()
    assert rec.value == attrs["value"].encode()
    assert rec.size == len(data)
    assert record.encode(rec.key, rec.value, rec.flags, rec.timestamp_ms) == data


def test_there_are_examples_of_every_flag():
    flags = {int(a["flags"], 16) for a, _ in _examples("example")}
    assert flags == {0x00, 0x01, 0x02, 0x06, 0x08}


@pytest.mark.parametrize("attrs,data", _examples("hint"))
def test_hint_example(attrs, data):
    entry = (attrs["key"].encode(), int(attrs["offset"]), int(attrs["size"]),
             int(attrs["timestamp"]))  # fmt: skip
    assert list(decode_hint(data, int(attrs["data_size"]))) == [entry]
    assert encode_hint([entry], int(attrs["data_size"])) == data


def test_every_truncation_of_a_record_is_detected():
    data = _examples("example")[0][1]
    for cut in range(len(data)):
        scanner = record.RecordScanner(data[:cut])
        assert list(scanner) == []
        assert scanner.valid_end == 0
        expected = {None} if cut == 0 else {"short header", "runs past end"}
        assert scanner.error in expected
