"""The journal's records: how one job change is laid out on disk.

On the request's journey: when the appserver's put reaches mq, `journal.py` appends
`encode_put(job)` to the journal; after a crash, `replay.py` reads the records back into
jobs. Everything here is pure (bytes in, bytes out), so tests can tear and flip records at
every offset.

    crc32:u32 | length:u32 | type:u8 | payload (length - 1 bytes)      big-endian;
    the CRC (zlib's CRC-32) covers length, type and payload

    META   1  generation:u32 next_id:u64                      first record of a file
    PUT    2  id:u64 pri:u32 delay:u32 ttr:u32 created:f64 deadline:f64 state:u8
              reserves timeouts releases buries kicks:u32*5 tube_len:u16 body_len:u32
              tube body
    STATE  3  id:u64 pri:u32 delay:u32 deadline:f64 state:u8 counters:u32*5
    DELETE 4  id:u64

Every record states the job's whole current state (not a delta), so replay is "last
record wins" and counters never drift. Replay stops at the first damaged record (short
header, length past the end, bad CRC): point-in-time recovery, as LevelDB and RocksDB's
default do for a torn tail.

Simpler than the real thing: beanstalkd writes its raw C job struct in native byte order
with no checksum; we spend 4 bytes per record on a CRC and can tell a torn write from data.
"""

from __future__ import annotations

import struct
import zlib

from mq.job import BURIED, DELAYED, READY, RESERVED, Job

# Compaction never starts below this journal size (beanstalkd's -s / binlog size default):
# rewriting a small file buys nothing. Here, not in journal.py, so that the command line
# can show it without importing asyncio (see mq/__main__.py on start-up order).
DEFAULT_COMPACT_MIN = 10 * 1024 * 1024

# A record longer than this is corruption, not data (a job is at most 1 GiB with -z).
MAX_RECORD = (1 << 30) + 1024

META, PUT, STATE, DELETE = 1, 2, 3, 4
STATE_CODES = {READY: 0, RESERVED: 1, DELAYED: 2, BURIED: 3}
STATE_NAMES = {code: name for name, code in STATE_CODES.items()}

_HEAD = struct.Struct(">II")
_U32 = struct.Struct(">I")
_META = struct.Struct(">BIQ")
_PUT = struct.Struct(">BQIIIddBIIIIIHI")
_STATE = struct.Struct(">BQIIdBIIIII")
_DELETE = struct.Struct(">BQ")


# The same layouts with the length in front: a STATE or DELETE record after its CRC is one
# pack (its length is fixed), a PUT's head likewise, and the CRC one crc32 over all of it
# (the same number as crc32(payload, crc32(length)): the bytes on disk do not change).
# Measured with callgrind, greenstalk put/reserve/delete with --fsync always: encoding a
# job's three records took 3 frames (2 packs, 2 crc32 calls, 2 concatenations each) and
# two counters() tuples; see mq/README.md for what this saves.
_PUT_L = struct.Struct(">IBQIIIddBIIIIIHI")
_STATE_L = struct.Struct(">IBQIIdBIIIII")
_DELETE_L = struct.Struct(">IBQ")
_crc32 = zlib.crc32


def _frame(payload: bytes) -> bytes:
    length = _U32.pack(len(payload))
    return _U32.pack(zlib.crc32(payload, zlib.crc32(length))) + length + payload


def encode_meta(generation: int, next_id: int) -> bytes:
    return _frame(_META.pack(META, generation, next_id))


def encode_put(job: Job) -> bytes:
    tube = job.tube.encode()
    body = job.body
    record = (
        _PUT_L.pack(
            _PUT.size + len(tube) + len(body), PUT, job.id, job.pri, job.delay, job.ttr,
            job.created, job.deadline, STATE_CODES[job.state], job.reserves, job.timeouts,
            job.releases, job.buries, job.kicks, len(tube), len(body),
        )
        + tube
        + body
    )  # fmt: skip
    return _U32.pack(_crc32(record)) + record


def encode_state(job: Job) -> bytes:
    record = _STATE_L.pack(
        _STATE.size, STATE, job.id, job.pri, job.delay, job.deadline, STATE_CODES[job.state],
        job.reserves, job.timeouts, job.releases, job.buries, job.kicks,
    )  # fmt: skip
    return _U32.pack(_crc32(record)) + record


def encode_delete(job_id: int) -> bytes:
    record = _DELETE_L.pack(_DELETE.size, DELETE, job_id)
    return _U32.pack(_crc32(record)) + record


# A PUT record's bytes besides its tube name and body (crc, length and the fixed fields).
PUT_HEAD = 8 + _PUT.size


def put_size(job: Job) -> int:
    """Bytes of a job's PUT record (what compaction would rewrite for it)."""
    return PUT_HEAD + len(job.tube) + len(job.body)
