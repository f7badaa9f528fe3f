"""FORMAT.md's hex examples decode to what they say, and encoding reproduces them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


_op = st.one_of(
    st.tuples(st.binary(max_size=20), st.binary(max_size=40)),  # put
    st.tuples(st.binary(max_size=20), st.none()),  # delete
    st.just((None, None)),  # FLUSH
)


@given(ops=st.lists(_op, min_size=1, max_size=6), ts=st.integers(0, 2**63 - 1))
def test_a_run_is_the_records_encode_makes_with_batch_flags(ops, ts):
    payload, sizes = record.encode_run(ops, ts)
    last = len(ops) - 1
    expected = []
    for i, (key, value) in enumerate(ops):
        flags = (record.FLAG_BATCH | (record.FLAG_COMMIT if i == last else 0)) if last else 0
        if key is None:
            expected.append(record.encode(b"", b"", flags | record.FLAG_FLUSH, ts))
        elif value is None:
            expected.append(record.encode(key, b"", flags | record.FLAG_TOMBSTONE, ts))
        else:
            expected.append(record.encode(key, value, flags, ts))
    assert payload == b"".join(expected)
    assert sizes == [len(rec) for rec in expected]


def test_a_run_refuses_a_key_over_the_limit_like_encode():
    with pytest.raises(record.RecordTooLarge):
        record.encode_run([(b"k" * (record.MAX_KEY_SIZE + 1), b"v")], 0)
