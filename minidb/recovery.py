"""Recovery: rebuild the keydir from the data files when a database is opened.

Journey: `engine.py`'s `DB.__init__` takes the directory lock and calls `recover()`; once it
returns, the keydir points at every live key and the database can serve reads and writes.

In file-id order (later files win):
1. delete `*.tmp` leftovers of an interrupted merge and hint files without a data file;
2. for each data file but the last, load its hint file if it has a valid one
   (`hint.py`), else scan its records (`record.RecordScanner`); the last (active) file
   is always scanned. A batch is applied only when its COMMIT record is reached;
3. a bad record (short, past the end, bad CRC, unknown flags, unterminated batch) ends
   the file's valid prefix. In the active file that is a torn write from a crash:
   truncate there, which keeps exactly what was written completely (point-in-time
   recovery, RocksDB's default). In any older file it cannot be a torn write (files are
   fsynced before they stop being active), so it is real corruption: raise
   `CorruptionError` naming the file and offset, or with `on_corruption="skip"` log it
   loudly, keep the prefix and list it in the stats.

Speed: a million keys is a million Python loop iterations, so the hot paths (hint entries,
plain puts) update the keydir dict directly instead of calling methods.

Simpler than the real thing: Bitcask opens files lazily and can start serving before
every hint is read; we read everything before the first request.
"""

from __future__ import annotations

import os
from pathlib import Path

from minisys.files import fsync_dir
from minisys.logs import get_logger

from . import record
from .datafile import DATA_SUFFIX, HINT_SUFFIX, TMP_SUFFIX, DataFile, hint_path, parse_id
from .hint import HintError, load_hint
from .keydir import KeyDir

log = get_logger("minidb.recovery")


class CorruptionError(Exception):
    """A record failed its check somewhere it cannot be a torn tail."""


class Recovery:
    """The state of one recovery run, and what it found (kept for `DB.stats()`)."""

    def __init__(
        self, directory: Path, keydir: KeyDir, files: dict[int, DataFile], on_corruption: str
    ) -> None:
        self.dir = directory
        self.keydir = keydir
        self.files = files
        self.on_corruption = on_corruption
        self.live_bytes = 0
        self.files_from_hints = 0
        self.truncated_bytes = 0
        self.corrupt_files: list[str] = []

    def run(self) -> None:
        ids = []
        for entry in os.scandir(self.dir):
            if entry.name.endswith(TMP_SUFFIX):
                os.unlink(entry.path)  # a merge died before publishing this file
            elif (file_id := parse_id(entry.name, DATA_SUFFIX)) is not None:
                ids.append(file_id)
        ids.sort()
        for entry in os.scandir(self.dir):
            file_id = parse_id(entry.name, HINT_SUFFIX)
            if file_id is not None and file_id not in ids:
                os.unlink(entry.path)  # its data file was deleted by a merge
        for i, file_id in enumerate(ids):
            last = i == len(ids) - 1
            datafile = DataFile(self.dir, file_id, writable=last)
            self.files[file_id] = datafile
            # The active file never has a hint; older ones may (if a merge wrote them).
            if last or not self.load_hint(datafile):
                self.scan_file(datafile, last=last)
        if not ids:
            datafile = DataFile(self.dir, 1, writable=True)
            self.files[1] = datafile
            fsync_dir(self.dir)

    def load_hint(self, datafile: DataFile) -> bool:
        path = hint_path(self.dir, datafile.id)
        try:
            buf = path.read_bytes()
        except FileNotFoundError:
            return False
        try:
            self.live_bytes += load_hint(buf, datafile.size, datafile.id, self.keydir.entries)
        except HintError as exc:
            log.warning("ignoring hint file %s (%s); scanning the data file", path.name, exc)
            return False
        self.files_from_hints += 1
        return True

    def scan_file(self, datafile: DataFile, *, last: bool) -> None:
        scanner = record.RecordScanner(datafile.read_all())
        pending: list[tuple[int, int, bytes, int, int]] = []
        pending_start = 0
        error = None
        file_id = datafile.id
        entries = self.keydir.entries  # no scan index exists yet: plain dict updates suffice
        for offset, flags, ts, key, size in scanner:
            if flags == 0 and not pending:  # a plain put, by far the most common record
                old = entries.get(key)
                entries[key] = (file_id, offset, size, ts)
                self.live_bytes += size if old is None else size - old[2]
            elif flags & record.FLAG_BATCH:
                if not pending:
                    pending_start = offset
                pending.append((offset, flags, key, size, ts))
                if flags & record.FLAG_COMMIT:
                    for p in pending:
                        self.apply(file_id, *p)
                    pending.clear()
            elif pending:
                error = ("unterminated batch", pending_start)
                break
            else:
                self.apply(file_id, offset, flags, key, size, ts)
        if error is None and scanner.error is not None:
            error = (scanner.error, pending_start if pending else scanner.valid_end)
        elif error is None and pending:
            error = ("unterminated batch", pending_start)
        if error is None:
            return
        reason, good_end = error
        if last:
            log.warning(
                "%s: %s at offset %d; truncating the torn tail (%d bytes)",
                datafile.path.name, reason, good_end, datafile.size - good_end,
            )  # fmt: skip
            self.truncated_bytes += datafile.size - good_end
            datafile.truncate(good_end)
            return
        message = (
            f"{datafile.path}: {reason} at offset {good_end} of {datafile.size}. This is not"
            " the active file, so it cannot be a torn write: the disk or something else"
            " damaged it. Restore from a backup, or open with on_corruption='skip' to keep"
            " the records before the damage."
        )
        if self.on_corruption == "raise":
            raise CorruptionError(message)
        log.error("CORRUPTION %s", message)
        self.corrupt_files.append(f"{datafile.path.name}@{good_end}")

    def apply(self, file_id: int, offset: int, flags: int, key: bytes, size: int,
                         ts: int) -> None:  # fmt: skip
        if flags & record.FLAG_FLUSH:
            self.keydir.clear()
            self.live_bytes = 0
        elif flags & record.FLAG_TOMBSTONE:
            old = self.keydir.remove(key)
            if old is not None:
                self.live_bytes -= old[2]
        else:
            old = self.keydir.put(key, (file_id, offset, size, ts))
            self.live_bytes += size - (old[2] if old is not None else 0)


def recover(
    directory: Path, keydir: KeyDir, files: dict[int, DataFile], on_corruption: str = "raise"
) -> Recovery:
    """Open every data file of `directory` into `files` and fill `keydir` from them."""
    recovery = Recovery(directory, keydir, files, on_corruption)
    recovery.run()
    return recovery
