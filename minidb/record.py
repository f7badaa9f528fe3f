"""The on-disk record: the one format every minidb data file is made of.

Journey: a `SET` arrives over RESP, `commands.py` turns it into a put, `engine.py` calls
`encode()` here and appends the bytes to the active data file. On restart `engine.py` walks
each data file with `RecordScanner` to rebuild the keydir. Read `FORMAT.md` for the same
layout with hex examples (a test parses them), then `datafile.py`.

A record is a fixed 21-byte big-endian header followed by the key and the value:

    offset  size  field
    0       4     crc32      zlib.crc32 of every byte after this field (header rest + key + value)
    4       1     flags      bit 0 tombstone, bit 1 batch, bit 2 commit, bit 3 flush
    5       8     timestamp  milliseconds since the Unix epoch when the record was written
    13      4     key_len    length of the key in bytes
    17      4     value_len  length of the value in bytes (0 for a tombstone)
    21      ...   key, then value

Flags:
- TOMBSTONE: the key was deleted. A delete is just another appended record.
- BATCH: this record belongs to an atomic batch and more records of the batch follow.
- COMMIT: the last record of a batch (carries BATCH too). Recovery applies a batch only
  when it reaches its COMMIT record, so a crash half-way through a batch loses all of it.
- FLUSH: `FLUSHALL` - forget every key written before this record (key and value empty).

A record that stands alone (a plain put or delete) carries neither BATCH nor COMMIT and
commits itself.

Why a CRC over everything after it: a torn write (power lost half-way through an append)
or a flipped bit then shows up as a mismatch, and the scanner stops there instead of
handing out garbage. A bad length field is caught the same way, because the CRC is then
computed over the wrong bytes (or the length runs past the end of the file).

Simpler than the real thing: Bitcask's header is 14 bytes (4-byte timestamp in seconds,
2-byte key length) and marks deletes with a magic value; we spend 7 more bytes per record
for millisecond timestamps, 4-byte key lengths and explicit flags. There is no per-record
expiry time and no compression.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

HEADER = struct.Struct(">IBQII")
HEADER_SIZE = HEADER.size  # 21
# Everything after the CRC field: flags, timestamp, key_len, value_len.
_BODY_HEAD = struct.Struct(">BQII")
CRC = struct.Struct(">I")

FLAG_TOMBSTONE = 0x01
FLAG_BATCH = 0x02
FLAG_COMMIT = 0x04
FLAG_FLUSH = 0x08

# An operation: (key, value) puts, (key, None) deletes, (None, None) forgets every key.
Op = tuple[bytes | None, bytes | None]
KNOWN_FLAGS = FLAG_TOMBSTONE | FLAG_BATCH | FLAG_COMMIT | FLAG_FLUSH

# Keys live in RAM (the keydir holds every one), so a huge key is almost surely a bug.
MAX_KEY_SIZE = 1024 * 1024
# Same as Redis's default proto-max-bulk-len: a value never exceeds what RESP can carry.
MAX_VALUE_SIZE = 512 * 1024 * 1024


class RecordTooLarge(ValueError):
    """A key or value is over MAX_KEY_SIZE / MAX_VALUE_SIZE."""


def encode(key: bytes, value: bytes, flags: int, timestamp_ms: int) -> bytes:
    """The bytes of one record, CRC included."""
    if len(key) > MAX_KEY_SIZE:
        raise RecordTooLarge(f"key of {len(key)} bytes is over {MAX_KEY_SIZE}")
    if len(value) > MAX_VALUE_SIZE:
        raise RecordTooLarge(f"value of {len(value)} bytes is over {MAX_VALUE_SIZE}")
    body = _BODY_HEAD.pack(flags, timestamp_ms, len(key), len(value)) + key + value
    return CRC.pack(zlib.crc32(body)) + body


def encode_run(ops: Sequence[Op], timestamp_ms: int) -> tuple[bytes, list[int]]:
    """The bytes of several ops written as one atomic unit, and each record's size.

    One op is one self-committing record; more become a BATCH...COMMIT run. An op is
    `(key, value)` (put), `(key, None)` (tombstone) or `(None, None)` (FLUSH). The same
    bytes as `encode` per record, built in one loop that appends each record's CRC and
    body to one list joined once (a call and a copy less per record).
    """
    last = len(ops) - 1
    flags = FLAG_BATCH if last else 0
    parts: list[bytes] = []
    sizes: list[int] = []
    pack_head, pack_crc, crc32 = _BODY_HEAD.pack, CRC.pack, zlib.crc32
    for i, (key, value) in enumerate(ops):
        if i == last and last:
            flags |= FLAG_COMMIT
        if key is None:
            key, value, kind = b"", b"", FLAG_FLUSH
        elif value is None:
            value, kind = b"", FLAG_TOMBSTONE
        else:
            kind = 0
        if len(key) > MAX_KEY_SIZE or len(value) > MAX_VALUE_SIZE:
            encode(key, value, kind, timestamp_ms)  # raises RecordTooLarge with the reason
        body = pack_head(flags | kind, timestamp_ms, len(key), len(value)) + key + value
        parts.append(pack_crc(crc32(body)))
        parts.append(body)
        sizes.append(len(body) + 4)
    return b"".join(parts), sizes


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record (used by tests, FORMAT.md and merge; recovery avoids the object)."""

    offset: int
    flags: int
    timestamp_ms: int
    key: bytes
    value: bytes

    @property
    def size(self) -> int:
        return HEADER_SIZE + len(self.key) + len(self.value)

    @property
    def tombstone(self) -> bool:
        return bool(self.flags & FLAG_TOMBSTONE)


def check(buf: bytes | memoryview, offset: int) -> tuple[int, int, int, int] | str:
    """Validate the record at `offset`: (flags, timestamp, key_len, value_len) or a reason.

    The reason is a short text ("short header", "runs past end", "bad crc", "bad flags")
    that recovery puts into its error messages.
    """
    end = len(buf)
    if offset + HEADER_SIZE > end:
        return "short header"
    crc, flags, ts, klen, vlen = HEADER.unpack_from(buf, offset)
    size = HEADER_SIZE + klen + vlen
    if offset + size > end:
        return "runs past end"
    if zlib.crc32(buf[offset + 4 : offset + size]) != crc:
        return "bad crc"
    if flags & ~KNOWN_FLAGS:
        return "bad flags"
    return flags, ts, klen, vlen


def decode_at(buf: bytes, offset: int) -> Record:
    """Decode one record or raise ValueError naming what is wrong."""
    ok = check(buf, offset)
    if isinstance(ok, str):
        raise ValueError(f"bad record at offset {offset}: {ok}")
    flags, ts, klen, vlen = ok
    start = offset + HEADER_SIZE
    return Record(
        offset, flags, ts, buf[start : start + klen], buf[start + klen : start + klen + vlen]
    )


class RecordScanner:
    """Walk the records of one file's bytes, stopping at the first bad one.

    Iterating yields `(offset, flags, timestamp, key, size)` for each good record (the
    value is the last `size - HEADER_SIZE - len(key)` bytes of the record). Afterwards
    `valid_end` is the offset just past the last good record and `error` is None (clean
    end of data) or the reason the walk stopped at `valid_end`.
    Sans-I/O: it only sees bytes; the caller decides whether to truncate or to complain.
    """

    def __init__(self, buf: bytes, start: int = 0) -> None:
        self.buf = bytes(buf)
        self.valid_end = start
        self.error: str | None = None

    def __iter__(self):
        buf = self.buf
        view = memoryview(buf)  # CRC over a view: no copy of big values
        end = len(buf)
        offset = self.valid_end
        unpack = HEADER.unpack_from
        crc32 = zlib.crc32
        header_size = HEADER_SIZE
        while offset < end:
            if offset + header_size > end:
                self.error = "short header"
                return
            crc, flags, ts, klen, vlen = unpack(buf, offset)
            size = header_size + klen + vlen
            if offset + size > end:
                self.error = "runs past end"
                return
            if crc32(view[offset + 4 : offset + size]) != crc:
                self.error = "bad crc"
                return
            if flags & ~KNOWN_FLAGS:
                self.error = "bad flags"
                return
            key_start = offset + header_size
            yield offset, flags, ts, buf[key_start : key_start + klen], size
            offset += size
            self.valid_end = offset
