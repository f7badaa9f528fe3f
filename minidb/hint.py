"""Hint files `NNNNNN.hint`: the keydir of one merged data file, without the values.

Journey: `merge.py` writes a hint file next to every data file it produces; on the next
start `engine.py` reads the hint instead of scanning the (much larger) data file, which is
what makes reopening a big database fast. Values never pass through here.

Layout (big-endian):

    magic      8 bytes  b"MDBHINT2"
    entries    count x (timestamp u64 | key_len u32 | offset u64 | size u32), 24 bytes each
    keys       the keys, concatenated in entry order
    trailer    b"HINTEND2" | entry_count u64 | data_size u64 | crc32 u32

`offset`/`size` locate the whole record in the data file. The fixed-size entries come
first and the keys after them so that loading is one `struct.iter_unpack` over the entry
array (a C loop) plus a key slice per entry - about twice as fast in Python as decoding
interleaved entries one by one, which matters at a million keys.

`data_size` is the size the data file had when the hint was written: if they differ, the
hint describes some other file and is ignored. The single CRC at the end covers every byte
before it, so a torn or flipped hint file is detected as a whole and recovery falls back to
scanning the data file (the fix Bitcask made in its PR #35). A hint file is an
optimisation, never the source of truth.

Simpler than the real thing: Bitcask writes hint entries while merging and also keeps a
per-entry tombstone bit; merged files here never hold tombstones, so hints do not either.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence

MAGIC = b"MDBHINT2"
TRAILER_MAGIC = b"HINTEND2"
ENTRY = struct.Struct(">QIQI")
TRAILER = struct.Struct(">8sQQI")

Hint = tuple[bytes, int, int, int]  # (key, offset, size, timestamp_ms)


class HintError(ValueError):
    """The hint file is damaged or does not match its data file (use the data file)."""


def encode_hint(entries: Sequence[Hint], data_size: int) -> bytes:
    """Bytes of a hint file for `(key, offset, size, timestamp)` entries."""
    pack = ENTRY.pack
    fixed = b"".join(pack(ts, len(key), offset, size) for key, offset, size, ts in entries)
    keys = b"".join(key for key, _, _, _ in entries)
    body = MAGIC + fixed + keys + TRAILER.pack(TRAILER_MAGIC, len(entries), data_size, 0)[:-4]
    return body + struct.pack(">I", zlib.crc32(body))


def _check(buf: bytes, data_size: int) -> int:
    """Validate the whole file; return the entry count."""
    if len(buf) < len(MAGIC) + TRAILER.size or not buf.startswith(MAGIC):
        raise HintError("not a hint file")
    magic, count, size_then, crc = TRAILER.unpack_from(buf, len(buf) - TRAILER.size)
    if magic != TRAILER_MAGIC or zlib.crc32(memoryview(buf)[:-4]) != crc:
        raise HintError("bad hint checksum")
    if size_then != data_size:
        raise HintError(f"hint describes {size_then} bytes but the data file has {data_size}")
    if len(MAGIC) + count * ENTRY.size > len(buf) - TRAILER.size:
        raise HintError("hint entry count does not match its length")
    return count


def load_hint(buf: bytes, data_size: int, file_id: int, keydir: dict) -> int:
    """Point `keydir` entries at `file_id` for every key in the hint; return live bytes added.

    Raises HintError (before touching `keydir`) if the hint cannot be trusted.
    """
    count = _check(buf, data_size)
    keys_at = len(MAGIC) + count * ENTRY.size
    fixed = memoryview(buf)[len(MAGIC) : keys_at]
    live = 0
    pos = keys_at
    # setdefault inserts a new key and returns what is there in one lookup (get + set
    # would be two); only a key some older file already had needs a second store.
    setdefault = keydir.setdefault
    for ts, klen, offset, size in ENTRY.iter_unpack(fixed):
        key = buf[pos : pos + klen]
        pos += klen
        entry = (file_id, offset, size, ts)
        old = setdefault(key, entry)
        if old is entry:
            live += size
        else:
            keydir[key] = entry
            live += size - old[2]
    return live


def decode_hint(buf: bytes, data_size: int) -> Iterator[Hint]:
    """Yield `(key, offset, size, timestamp)` entries (for tests and tools)."""
    keydir: dict = {}
    load_hint(buf, data_size, 0, keydir)
    for key, (_, offset, size, ts) in keydir.items():
        yield key, offset, size, ts
