"""PROXY protocol v1 codec: fixed vectors, round trips, every split, strict rejection."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minisys.proxyproto import (
    MAX_V1_LENGTH,
    ProxyHeader,
    ProxyProtocolError,
    encode_v1,
    encode_v1_unknown,
    parse_v1,
)

# Captured from HAProxy `send-proxy` on loopback (shared/specs/lb_gateway.md §1.3).
CAPTURED = b"PROXY TCP4 127.0.0.1 127.0.0.1 53316 18041\r\n"


def test_captured_haproxy_header_parses():
    header, used = parse_v1(CAPTURED + b"GET / HTTP/1.1\r\n")
    assert used == len(CAPTURED)
    assert header == ProxyHeader("TCP4", "127.0.0.1", "127.0.0.1", 53316, 18041)
    assert header.source == ("127.0.0.1", 53316)


def test_encode_matches_capture():
    assert encode_v1("127.0.0.1", 53316, "127.0.0.1", 18041) == CAPTURED


def test_encode_ipv6_and_mapped_ipv4():
    assert encode_v1("::1", 1, "::1", 2) == b"PROXY TCP6 ::1 ::1 1 2\r\n"
    assert encode_v1("::ffff:10.0.0.1", 5, "10.0.0.2", 6) == b"PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n"
    with pytest.raises(ValueError):
        encode_v1("::1", 1, "127.0.0.1", 2)
    with pytest.raises(ValueError):
        encode_v1("127.0.0.1", 70000, "127.0.0.1", 2)


def test_unknown():
    assert parse_v1(encode_v1_unknown() + b"x") == (ProxyHeader("UNKNOWN"), 15)
    # The spec says a receiver ignores whatever follows UNKNOWN.
    header, used = parse_v1(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest")
    assert header == ProxyHeader("UNKNOWN") and header.source is None and used == 35


def test_longest_legal_header_is_107_bytes():
    v6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
    line = f"PROXY TCP6 {v6} {v6} 65535 65535\r\n".encode()
    assert len(line) == 104  # within the 107 the spec allows
    assert parse_v1(line)[1] == 104
    # No CRLF within 107 bytes: give up rather than wait for more.
    with pytest.raises(ProxyProtocolError, match="107"):
        parse_v1(b"PROXY UNKNOWN " + b"x" * 100)


def test_partial_input_waits():
    for i in range(len(CAPTURED)):
        assert parse_v1(CAPTURED[:i]) == (None, 0)


@pytest.mark.parametrize(
    "line",
    [
        b"GET / HTTP/1.1\r\n",
        b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXY  TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
        b"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n",
        b"PROXY TCP4 1.2.3.04 1.2.3.4 1 2\r\n",
        b"PROXY TCP4 256.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP6 ::1 ::g 1 2\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1_0 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 \xd9\xa1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n",
        b"PROXY TCP4 1.2.3.4\r1.2.3.4 1 2\r\n",
        b"PROXY\r\n",
    ],
)
def test_strict_rejection(line):
    with pytest.raises(ProxyProtocolError):
        parse_v1(line)


def test_v2_signature_is_refused_clearly():
    captured_v2 = b"\r\n\r\n\x00\r\nQUIT\n!\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01\xa2\x18Fz"
    assert parse_v1(captured_v2[:5]) == (None, 0)
    with pytest.raises(ProxyProtocolError, match="v2"):
        parse_v1(captured_v2)


def test_rejects_early_without_waiting_for_crlf():
    with pytest.raises(ProxyProtocolError):
        parse_v1(b"GET")


addresses_v4 = st.ip_addresses(v=4).map(str)
addresses_v6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str)
ports = st.integers(0, 65535)


@given(
    st.one_of(st.tuples(addresses_v4, addresses_v4), st.tuples(addresses_v6, addresses_v6)),
    ports,
    ports,
    st.binary(max_size=64),
    st.data(),
)
def test_round_trip_in_any_split(pair, sport, dport, payload, data):
    src, dst = pair
    line = encode_v1(src, sport, dst, dport)
    assert len(line) <= MAX_V1_LENGTH
    stream = line + payload
    # Feed the stream as a receiver would: growing prefixes until a header appears.
    cut = data.draw(st.integers(0, len(line) - 1))
    assert parse_v1(stream[:cut]) == (None, 0)
    header, used = parse_v1(stream)
    assert used == len(line) and stream[used:] == payload
    assert ipaddress.ip_address(header.src_host) == ipaddress.ip_address(src)
    assert ipaddress.ip_address(header.dst_host) == ipaddress.ip_address(dst)
    assert (header.src_port, header.dst_port) == (sport, dport)


@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_crash(blob):
    try:
        header, used = parse_v1(blob)
    except ProxyProtocolError:
        return
    if header is None:
        assert used == 0 and len(blob) < MAX_V1_LENGTH
    else:
        assert blob[used - 2 : used] == b"\r\n" and used <= MAX_V1_LENGTH


@given(st.binary(min_size=1, max_size=40))
def test_garbage_after_prefix_is_rejected_or_waits(tail):
    blob = b"PROXY TCP4 " + tail
    try:
        header, _ = parse_v1(blob)
    except ProxyProtocolError:
        return
    assert header is None or header.protocol == "TCP4"
