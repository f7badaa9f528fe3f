"""The journal's records: how one job change is laid out on disk, and how to read them.

On the request's journey: when the appserver's put reaches mq, `journal.py` appends
`encode_put(job)` to the journal; after a crash, `read_journal` turns the file back into
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


def _frame(payload: bytes) -> bytes:
    length = _U32.pack(len(payload))
    return _U32.pack(zlib.crc32(payload, zlib.crc32(length))) + length + payload


def encode_meta(generation: int, next_id: int) -> bytes:
    return _frame(_META.pack(META, generation, next_id))


def encode_put(job: Job) -> bytes:
    tube = job.tube.encode()
    head = _PUT.pack(
        PUT, job.id, job.pri, job.delay, job.ttr, job.created, job.deadline,
        STATE_CODES[job.state], *job.counters(), len(tube), len(job.body),
    )  # fmt: skip
    return _frame(head + tube + job.body)


def encode_state(job: Job) -> bytes:
    state = STATE_CODES[job.state]
    return _frame(
        _STATE.pack(STATE, job.id, job.pri, job.delay, job.deadline, state, *job.counters())
    )


def encode_delete(job_id: int) -> bytes:
    return _frame(_DELETE.pack(DELETE, job_id))


def put_size(job: Job) -> int:
    """Bytes of a job's PUT record (what compaction would rewrite for it)."""
    return 8 + _PUT.size + len(job.tube) + len(job.body)


class Replay:
    """What reading a journal found: live jobs, next id, and where good data ends."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.next_id = 1
        self.generation = 0
        self.good_bytes = 0
        self.records = 0
        self.torn = False
        self.live_bytes = 0  # bytes of the live jobs' PUT records (what compaction keeps)


def read_journal(data: bytes) -> Replay:
    """Replay records until the end or the first damaged one (point-in-time recovery)."""
    out = Replay()
    jobs = out.jobs
    view = memoryview(data)  # slices of a memoryview copy nothing
    crc32, head, put_size_, names = zlib.crc32, _HEAD.unpack_from, _PUT.size, STATE_NAMES
    # One str per tube name, shared by all its jobs (a million "default"s would cost ~50 MB).
    tube_names: dict[bytes, str] = {}
    next_id = 1
    records = live_bytes = 0
    pos, end = 0, len(data)
    while pos + 8 <= end:
        crc, length = head(data, pos)
        body = pos + 8
        if length < 1 or length > MAX_RECORD or body + length > end:
            break
        if crc32(view[pos + 4 : body + length]) != crc:
            break
        kind = data[body]
        try:
            if kind == PUT:
                f = _PUT.unpack_from(data, body)
                tube_at = body + put_size_
                body_at = tube_at + f[13]
                raw_tube = data[tube_at:body_at]
                tube = tube_names.get(raw_tube)
                if tube is None:
                    tube = tube_names[raw_tube] = raw_tube.decode()
                job_id = f[1]
                job = Job(job_id, tube, f[2], f[3], f[4], data[body_at : body_at + f[14]], f[5])
                job.deadline = f[6]
                job.state = names[f[7]]
                job.reserves, job.timeouts, job.releases, job.buries, job.kicks = f[8:13]
                old = jobs.get(job_id)
                if old is not None:
                    live_bytes -= put_size(old)
                jobs[job_id] = job
                live_bytes += 8 + length
                if job_id >= next_id:
                    next_id = job_id + 1
            elif kind == STATE:
                f = _STATE.unpack_from(data, body)
                job = jobs.get(f[1])
                if job is not None:
                    job.pri, job.delay, job.deadline = f[2], f[3], f[4]
                    job.state = names[f[5]]
                    job.set_counters(f[6:11])
            elif kind == DELETE:
                (_, job_id) = _DELETE.unpack_from(data, body)
                old = jobs.pop(job_id, None)
                if old is not None:
                    live_bytes -= put_size(old)
                next_id = max(next_id, job_id + 1)
            elif kind == META:
                _, out.generation, meta_next = _META.unpack_from(data, body)
                next_id = max(next_id, meta_next)
            else:
                break
        except (struct.error, KeyError, UnicodeDecodeError):
            break
        pos = body + length
        records += 1
    out.records = records
    out.live_bytes = live_bytes
    out.next_id = next_id
    out.good_bytes = pos
    # Zeros from here to the end are space the journal allocated ahead, not damage: no
    # record starts with a zero length.
    out.torn = pos != end and data.count(0, pos) != end - pos
    return out
