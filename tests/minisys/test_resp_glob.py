"""Redis glob patterns (KEYS, SCAN MATCH) against Python's fnmatch where they agree."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minisys.resp.glob import glob_matcher


@pytest.mark.parametrize(
    "pattern,key,matches",
    [
        (b"*", b"", True),
        (b"user:*", b"user:1", True),
        (b"user:*", b"users:1", False),
        (b"h?llo", b"hello", True),
        (b"h?llo", b"hllo", False),
        (b"h[ae]llo", b"hallo", True),
        (b"h[^e]llo", b"hello", False),
        (b"h[^e]llo", b"hallo", True),
        (b"h[a-b]llo", b"hbllo", True),
        (b"h[b-a]llo", b"hbllo", True),  # reversed ranges are the same range
        (b"a\\*b", b"a*b", True),
        (b"a\\*b", b"axb", False),
        (b"line\\[1]", b"line[1]", True),
        (b"a.b", b"axb", False),  # regex metacharacters are literal
        (b"*\n*", b"a\nb", True),  # binary-safe, newlines included
        # Answers redis-server 7 gave to KEYS: inside a class "x-]" is a range ending
        # at "]", and the class then runs on to the end of the pattern.
        (b"[?-]", b"?", True),
        (b"[?-]", b"]", True),
        (b"[?-]", b"[", True),
        (b"[?-]", b"-", False),
        (b"[a-]b", b"a", True),
        (b"[a-]b", b"ab", False),
        (b"[a", b"a", True),  # an unclosed class runs to the end of the pattern
        (b"[", b"[", False),
        (b"[^", b"x", True),
        (b"[\\]]", b"]", True),
        (b"a\\", b"a\\", True),  # a trailing backslash is literal
    ],
)
def test_redis_glob_examples(pattern, key, matches):
    assert glob_matcher(pattern)(key) is matches


@given(st.binary(max_size=12), st.text(alphabet="ab*?", max_size=6))
def test_agrees_with_fnmatch_on_star_and_question_mark(key, pattern):
    expected = fnmatch.fnmatchcase(key.decode("latin-1"), pattern)
    assert glob_matcher(pattern.encode())(key) is expected
