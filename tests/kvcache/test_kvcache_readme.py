"""The wire session in kvcache/README.md is replayed byte for byte against kvcache and
redis-server, and its hex columns are checked against the escaped text beside them."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "kvcache" / "README.md"
HEX = re.compile(r"(?:[0-9a-f]{2} )*[0-9a-f]{2}")


def unescape(text: str) -> bytes:
    return text.replace("\\r", "\r").replace("\\n", "\n").encode()


def wire_session() -> list[tuple[bytes, bytes]]:
    """(request, reply) pairs from the README's → / ← lines."""
    pairs: list[tuple[bytes, bytes]] = []
    request = None
    for line in README.read_text().splitlines():
        if line[:2] not in ("→ ", "← "):
            continue
        parts = [p.strip() for p in line[2:].split("  ") if p.strip()]
        data = unescape(parts[0])
        if len(parts) > 1 and HEX.fullmatch(parts[1]):
            assert bytes.fromhex(parts[1]) == data, f"README hex disagrees with {parts[0]}"
        if line.startswith("→"):
            request = data
        else:
            assert request is not None, "a reply without its request in the README"
            pairs.append((request, data))
            request = None
    return pairs


def test_readme_wire_session(client) -> None:
    session = wire_session()
    assert len(session) >= 5
    for request, reply in session:
        client.send_raw(request)
        got = b""
        while len(got) < len(reply):
            chunk = client.sock.recv(len(reply) - len(got))
            assert chunk, "server closed the connection"
            got += chunk
        assert got == reply, f"{request!r}: got {got!r}, README says {reply!r}"
