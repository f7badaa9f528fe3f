"""PROXY protocol version 1: the one-line header an L4 proxy puts before the payload.

Place on the journey: the lb accepts a client's TCP connection and opens its own
connection to a gateway. Without help the gateway would only ever see the lb's address
as its peer. With `--send-proxy` the lb writes one ASCII line first:

    PROXY TCP4 192.0.2.7 127.0.0.1 53316 8080\r\n
    50 52 4f 58 59 20 54 43 50 34 20 ...                    0d 0a

and then splices the client's bytes unchanged. The gateway feeds what it reads to
`parse_v1` until it gets a header, learns the real client address from it, and treats
everything after the CRLF as the start of the HTTP stream.

This module is sans-I/O: `encode_v1` returns bytes, `parse_v1` looks at a buffer and says
"not yet", "here is the header and how many bytes it took", or raises. Validation is
strict, because a receiver that accepts sloppy headers can be confused into trusting a
forged address: exactly one space between fields, addresses of the announced family,
ports as plain decimal without leading zeros, CRLF within 107 bytes. Only accept the
header from peers you trust (the lb), never from arbitrary clients.

Read next: `lb/proxy.py` (the sender) and the gateway's connection (the receiver).

Simpler than the real thing: version 2 (the binary form with TLVs) is detected and
refused with a clear error rather than parsed, and there is no "LOCAL" command.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# The spec's worst case: "PROXY TCP6 " + 2 × 39-char IPv6 + 2 × 5-digit ports + spaces
# + CRLF = 107 bytes. A receiver that has not seen CRLF by then must give up.
MAX_V1_LENGTH = 107

SIGNATURE_V1 = b"PROXY "
# Version 2 starts with this binary signature; we recognise it only to refuse it clearly.
SIGNATURE_V2 = b"\r\n\r\n\x00\r\nQUIT\n"

_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")
# Only these characters may appear in an address field; ipaddress does the rest.
_V4_CHARS = re.compile(rb"[0-9.]{7,15}")
_V6_CHARS = re.compile(rb"[0-9A-Fa-f:.]{2,45}")


class ProxyProtocolError(ValueError):
    """The peer sent something that is not a valid PROXY v1 header; drop the connection."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. For `UNKNOWN` the addresses and ports are None."""

    protocol: str  # "TCP4", "TCP6" or "UNKNOWN"
    src_host: str | None = None
    dst_host: str | None = None
    src_port: int | None = None
    dst_port: int | None = None

    @property
    def source(self) -> tuple[str, int] | None:
        """The real client's (host, port), or None when the proxy did not know it."""
        if self.src_host is None or self.src_port is None:
            return None
        return (self.src_host, self.src_port)


def encode_v1(src_host: str, src_port: int, dst_host: str, dst_port: int) -> bytes:
    """Build the header line for a TCP connection from src to dst.

    The family (TCP4/TCP6) follows the addresses; both must be of the same family.
    IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack socket reports)
    are written as plain IPv4 so the receiver sees the address the client really has.
    """
    src = _normalise(src_host)
    dst = _normalise(dst_host)
    if src.version != dst.version:
        raise ValueError(f"address families differ: {src_host!r} vs {dst_host!r}")
    for port in (src_port, dst_port):
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range: {port}")
    protocol = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {protocol} {src} {dst} {src_port} {dst_port}\r\n".encode("ascii")


def encode_v1_unknown() -> bytes:
    """The header for a connection whose addresses the proxy cannot tell (e.g. a UNIX socket)."""
    return b"PROXY UNKNOWN\r\n"


def parse_v1(buffer: bytes | bytearray | memoryview) -> tuple[ProxyHeader | None, int]:
    """Look for a complete header at the start of `buffer`.

    Returns `(None, 0)` when more bytes are needed, `(header, consumed)` when the header is
    complete (the payload starts at `buffer[consumed:]`), and raises `ProxyProtocolError`
    as soon as the bytes so far cannot become a valid header, so a receiver never waits on
    a peer that is not speaking the protocol.
    """
    data = bytes(buffer[:MAX_V1_LENGTH])
    head = data[: len(SIGNATURE_V1)]
    if not SIGNATURE_V1.startswith(head):
        if SIGNATURE_V2.startswith(data[: len(SIGNATURE_V2)]):
            if len(data) >= len(SIGNATURE_V2):
                raise ProxyProtocolError("PROXY protocol v2 is not supported")
            return None, 0
        raise ProxyProtocolError("missing PROXY protocol header")
    end = data.find(b"\r\n")
    if end < 0:
        if len(data) >= MAX_V1_LENGTH:
            raise ProxyProtocolError("PROXY header longer than 107 bytes")
        if b"\n" in data or b"\r" in data[:-1]:
            raise ProxyProtocolError("PROXY header must end with CRLF")
        return None, 0
    return _parse_line(data[:end]), end + 2


def _parse_line(line: bytes) -> ProxyHeader:
    """Validate one header line (without its CRLF)."""
    fields = line.split(b" ")
    protocol = fields[1] if len(fields) > 1 else b""
    if protocol == b"UNKNOWN":
        # The spec: a receiver must ignore whatever follows UNKNOWN up to the CRLF.
        return ProxyHeader("UNKNOWN")
    if protocol not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError(f"unknown PROXY protocol family {protocol[:16]!r}")
    if len(fields) != 6:
        raise ProxyProtocolError("PROXY header needs exactly 6 space-separated fields")
    _, _, src, dst, sport, dport = fields
    version = 4 if protocol == b"TCP4" else 6
    return ProxyHeader(
        protocol.decode("ascii"),
        src_host=_address(src, version),
        dst_host=_address(dst, version),
        src_port=_port(sport),
        dst_port=_port(dport),
    )


def _address(field: bytes, version: int) -> str:
    """Parse one address field, insisting on the family the header announced."""
    chars = _V4_CHARS if version == 4 else _V6_CHARS
    if not chars.fullmatch(field):
        raise ProxyProtocolError(f"invalid IPv{version} address {field[:45]!r}")
    try:
        address = ipaddress.ip_address(field.decode("ascii"))
    except ValueError:
        raise ProxyProtocolError(f"invalid IPv{version} address {field[:45]!r}") from None
    if address.version != version:
        raise ProxyProtocolError(f"invalid IPv{version} address {field[:45]!r}")
    return str(address)


def _port(field: bytes) -> int:
    """Decimal 0..65535 without sign, spaces or leading zeros (Python's int() allows all)."""
    if not _PORT.fullmatch(field) or int(field) > 65535:
        raise ProxyProtocolError(f"invalid port {field[:8]!r}")
    return int(field)


def _normalise(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
