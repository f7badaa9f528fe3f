"""SCAN's argument parsing, shared by kvcache and minidb: Redis's cursor rules and errors."""

from __future__ import annotations

import pytest

from minisys.resp.scan import DEFAULT_COUNT, U64_MAX, parse_cursor, parse_scan
from minisys.resp.values import CommandError


@pytest.mark.parametrize(
    "raw,cursor",
    [(b"0", 0), (b"", 0), (b"+0", 0), (b"00", 0), (b"42", 42), (b"-1", U64_MAX)],
)
def test_cursor_reads_like_strtoul(raw, cursor):
    assert parse_cursor(raw) == cursor


@pytest.mark.parametrize("raw", [b"abc", b" 1", b"1 ", b"+", b"-", b"18446744073709551616"])
def test_bad_cursor_is_invalid_cursor(raw):
    with pytest.raises(CommandError, match=r"^ERR invalid cursor$"):
        parse_cursor(raw)


def test_options_in_any_case_and_last_one_wins():
    args = parse_scan([b"SCAN", b"7", b"count", b"3", b"MATCH", b"a*", b"Count", b"5"])
    assert (args.cursor, args.count) == (7, 5)
    assert args.match is not None and args.match(b"abc") and not args.match(b"b")
    assert args.wants_strings


def test_defaults_and_type_filter():
    args = parse_scan([b"SCAN", b"0"])
    assert (args.count, args.match, args.type) == (DEFAULT_COUNT, None, None)
    assert parse_scan([b"scan", b"0", b"TYPE", b"STRING"]).wants_strings
    assert not parse_scan([b"scan", b"0", b"TYPE", b"hash"]).wants_strings


@pytest.mark.parametrize(
    "argv,error",
    [
        ([b"SCAN", b"x", b"COUNT"], "ERR invalid cursor"),  # the cursor is checked first
        ([b"SCAN", b"0", b"COUNT"], "ERR syntax error"),
        ([b"SCAN", b"0", b"COUNT", b"0"], "ERR syntax error"),
        ([b"SCAN", b"0", b"COUNT", b"x"], "ERR value is not an integer or out of range"),
        ([b"SCAN", b"0", b"FOO", b"bar"], "ERR syntax error"),
    ],
)
def test_errors_are_redis_texts(argv, error):
    with pytest.raises(CommandError) as info:
        parse_scan(argv)
    assert str(info.value) == error
