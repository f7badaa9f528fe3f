"""Hint files `NNNNNN.hint`: the keydir of one merged data file, without the values.

Journey: `merge.py` writes a hint file next to every data file it produces; on the next
start `engine.py` reads the hint instead of scanning the (much larger) data file, which is
what makes reopening a big database fast. Values never pass through here.

Layout (big-endian):

    magic      8 bytes  b"MDBHINT1"
    entries    repeated: timestamp u64 | key_len u32 | offset u64 | size u32 | key
    trailer    b"HINTEND1" | entry_count u64 | data_size u64 | crc32 u32

`offset`/`size` locate the whole record in the data file. `data_size` is the size the data
file had when the hint was written: if they differ, the hint describes some other file
and is ignored. The single CRC at the end covers every byte before it, so a torn or
flipped hint file is detected as a whole and recovery falls back to scanning the data
file (the fix Bitcask made in its PR #35). A hint file is an optimisation, never the
source of truth.

Simpler than the real thing: Bitcask writes hint entries while merging and also keeps a
per-entry tombstone bit; merged files here never hold tombstones, so hints do not either.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator

MAGIC = b"MDBHINT1"
TRAILER_MAGIC = b"HINTEND1"
ENTRY = struct.Struct(">QIQI")
TRAILER = struct.Struct(">8sQQI")


class HintError(ValueError):
    """The hint file is damaged or does not match its data file (use the data file)."""


def encode_hint(entries: Iterable[tuple[bytes, int, int, int]], data_size: int) -> bytes:
    """Bytes of a hint file for `(key, offset, size, timestamp)` entries."""
    parts = [MAGIC]
    pack = ENTRY.pack
    count = 0
    for key, offset, size, ts in entries:
        parts.append(pack(ts, len(key), offset, size))
        parts.append(key)
        count += 1
    body = b"".join(parts) + TRAILER.pack(TRAILER_MAGIC, count, data_size, 0)[:-4]
    return body + struct.pack(">I", zlib.crc32(body))


def decode_hint(buf: bytes, data_size: int) -> Iterator[tuple[bytes, int, int, int]]:
    """Yield `(key, offset, size, timestamp)`; raise HintError before yielding if damaged."""
    if len(buf) < len(MAGIC) + TRAILER.size or not buf.startswith(MAGIC):
        raise HintError("not a hint file")
    trailer_at = len(buf) - TRAILER.size
    magic, count, size_then, crc = TRAILER.unpack_from(buf, trailer_at)
    if magic != TRAILER_MAGIC or zlib.crc32(memoryview(buf)[:-4]) != crc:
        raise HintError("bad hint checksum")
    if size_then != data_size:
        raise HintError(f"hint describes {size_then} bytes but the data file has {data_size}")
    return _entries(buf, trailer_at, count)


def _entries(buf: bytes, end: int, count: int) -> Iterator[tuple[bytes, int, int, int]]:
    unpack = ENTRY.unpack_from
    entry_size = ENTRY.size
    pos = len(MAGIC)
    for _ in range(count):
        ts, klen, offset, size = unpack(buf, pos)
        pos += entry_size
        yield buf[pos : pos + klen], offset, size, ts
        pos += klen
    if pos != end:
        raise HintError("hint entry count does not match its length")
