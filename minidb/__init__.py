"""minidb: a Bitcask-style append-only key/value database, embedded and over RESP.

Where it sits: appserver -> RESP -> **minidb** (port 6381), the durable store behind the
cache. `from minidb import open_db` gives the same engine in-process.

A map of the package, in the order a request meets it:
- `__main__.py` / `server.py`  the RESP server on the shared engine (`minisys.resp`)
- `commands.py`                 GET/SET/INCR/SCAN/... with Redis's exact replies
- `transactions.py`             MULTI/EXEC/WATCH: a transaction is one atomic batch
- `writeset.py`                 a command's reads and buffered writes, committed as one batch
- `engine.py`                   open, put/get/delete/batch, stats
- `recovery.py`                 rebuild the keydir on open; torn tails vs corruption
- `sync.py`                     fsync policies and group commit
- `keydir.py`                   key -> (file, offset, size, timestamp); the SCAN cursor
- `datafile.py`                 one NNNNNN.data file: append, read via mmap/pread
- `record.py`                   the CRC-checked record format (see FORMAT.md)
- `hint.py`                     hint files for fast start
- `merge.py`                    crash-safe background compaction
- `faults.py`                   seams that crash a merge or fail an fsync on purpose

Read README.md for the big picture and FORMAT.md for the bytes on disk.
"""

from .engine import DB, Batch, CorruptionError, DatabaseClosed, DatabaseLocked, Stats, open_db
from .faults import Faults, SimulatedCrash
from .sync import SyncFailed

__all__ = [
    "DB",
    "Batch",
    "CorruptionError",
    "DatabaseClosed",
    "DatabaseLocked",
    "Faults",
    "SimulatedCrash",
    "Stats",
    "SyncFailed",
    "open_db",
]
