"""One data file `NNNNNN.data`: append at the end, read any record through a memory map.

Journey: `engine.py` keeps one `DataFile` per file in the data directory. Exactly one is
*active* (the highest id) and receives appends; the others are immutable until a merge
(`merge.py`) replaces them. A `get` reads one record at the position the keydir
remembers: a slice of the file's read-only `mmap`, or one `os.pread` for the newest bytes
of the active file that lie past its map. Read `record.py` for what the bytes mean and
`engine.py` for who calls what.

Why a map: a `pread` is a system call (~0.85 us here for a 135-byte record at a random
offset); slicing a mapped page that is already in the page cache is a memory copy. 100k
random gets of 135-byte records, three alternating pairs: 2.58-2.94 -> 1.87-2.46 us of
CPU per get; in `bench/minidb.py` 2.3-2.5x -> 3.1-3.6x sqlite3 over four runs (the
issue's target is 3x). The page cache is the same either way, so bytes appended with
`os.write` are visible through the map at once. The hazards, and what keeps each away:

- A mapped page past the end of the file raises SIGBUS (the process dies, no exception).
  So a file is mapped only up to its size *after* recovery has cut any torn tail, and
  nothing shrinks a data file afterwards: merges unlink whole files, never truncate. (A
  process outside minidb truncating a data file would kill the server; the `LOCK`
  convention is all that stops it, as with Bitcask.)
- A disk read error on a page that is not cached also arrives as SIGBUS, where `pread`
  would raise `OSError(EIO)`. We accept that (LMDB does too): the data is then lost
  either way and the process restarts into recovery.
- The active file grows: its map covers what it held when it was last mapped, reads past
  that use `pread`, and once `REMAP_BYTES` more were appended it is mapped again (a new
  `mmap`; the old one is unmapped when its last reader lets go). Sealing a file maps it
  whole.
- Merge retires files while gets may be reading them: a map keeps the unlinked inode alive
  exactly like a descriptor does, and it goes away with the `DataFile` (next paragraph).

Why raw file descriptors and `os.pread` rather than Python file objects: a file object has
one shared position and a buffer, so two threads reading the same file would need to lock
around seek+read; `pread` takes the position as an argument and needs no lock. Appends go
straight to the kernel with `os.write`, so a process killed with SIGKILL loses nothing that
was already acknowledged; only a power loss can lose what was not yet fsynced.

Lifetime without a read lock: a `get` looks up the `DataFile` object and holds it (and its
map) for the length of its read. A merge that retires a file only drops its references to
it; the descriptor is closed and the map dropped by `__del__` once the last reference is
gone. So a read racing a merge can never `pread` a descriptor that was closed (or, worse,
reused by the kernel for another file), and gets need no lock. Only `DB.close()` closes
files explicitly; even then `close()` only drops the map (never `mmap.close()`), so a get
still slicing it finishes on valid memory and the unmap happens when it lets go.

Simpler than the real thing: Bitcask also keeps files open lazily and caps open descriptors;
we keep every file open for the life of the database (a few hundred files at most; two
descriptors each, since Python's `mmap` keeps a duplicate of the one it maps).
"""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path

from minisys.files import fdatasync, write_all

DATA_SUFFIX = ".data"
HINT_SUFFIX = ".hint"
TMP_SUFFIX = ".tmp"
# Six digits sort lexically up to a million files; beyond that the name just grows.
ID_WIDTH = 6
# The active file is mapped again after this many bytes were appended past its map: a
# remap costs one mmap+munmap (a few us plus page faults for the pages read again), while
# every read of the unmapped tail costs a pread (~0.85 us) instead of a slice.
REMAP_BYTES = 1024 * 1024


def data_path(directory: Path, file_id: int) -> Path:
    return directory / f"{file_id:0{ID_WIDTH}d}{DATA_SUFFIX}"


def hint_path(directory: Path, file_id: int) -> Path:
    return directory / f"{file_id:0{ID_WIDTH}d}{HINT_SUFFIX}"


def parse_id(name: str, suffix: str) -> int | None:
    """The id in `000042.data` (for suffix `.data`), or None if the name is not ours."""
    if not name.endswith(suffix):
        return None
    stem = name[: -len(suffix)]
    return int(stem) if stem.isdigit() else None


class DataFile:
    """An open data file: its id, its size (= the next append offset) and its descriptor."""

    def __init__(self, directory: Path, file_id: int, *, writable: bool) -> None:
        self.id = file_id
        self.path = data_path(directory, file_id)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND if writable else os.O_RDONLY
        self.fd = os.open(self.path, flags, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.writable = writable
        # Guards the descriptor's lifetime: a background fsync must never run on a number
        # that close() already released (the kernel may have reused it for another file).
        self._fd_lock = threading.Lock()
        self.closed = False
        # Bytes [0, len(map)) readable as memory; b"" until `map_file()` (after recovery).
        self.map: mmap.mmap | bytes = b""

    def map_file(self) -> None:
        """Map the file as it is now, read-only (see "Why a map" for when this is safe)."""
        with self._fd_lock:
            if not self.closed:
                size = self.size
                self.map = mmap.mmap(self.fd, size, access=mmap.ACCESS_READ) if size else b""

    def append(self, data: bytes) -> int:
        """Write `data` at the end; return the offset where it starts."""
        offset = self.size
        written = os.write(self.fd, data)  # (write_all's first step, inline: every put)
        if written < len(data):  # a short write (say, a signal): write the rest
            write_all(self.fd, memoryview(data)[written:])
        self.size += len(data)
        if self.size - len(self.map) >= REMAP_BYTES:
            self.map_file()
        return offset

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def read_all(self) -> bytes:
        """The whole file (recovery and merge scan files front to back)."""
        chunks = []
        offset = 0
        while True:
            chunk = os.pread(self.fd, 1 << 24, offset)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            offset += len(chunk)

    def truncate(self, size: int) -> None:
        """Cut a torn tail (only ever called on the active file during recovery)."""
        if self.map:
            raise RuntimeError("a mapped file must never shrink (SIGBUS): truncate first")
        os.ftruncate(self.fd, size)
        fdatasync(self.fd)
        self.size = size

    def sync(self) -> None:
        with self._fd_lock:
            if not self.closed:
                fdatasync(self.fd)

    def close(self) -> None:
        with self._fd_lock:
            if not self.closed:
                self.closed = True
                self.map = b""  # unmapped now, or when the last get holding it is done
                os.close(self.fd)

    def __del__(self) -> None:
        # The last reference (keydir entry, reader, db.files) is gone: see the docstring.
        if not getattr(self, "closed", True):
            self.close()

    def __repr__(self) -> str:
        return f"DataFile({self.path.name}, size={self.size}, writable={self.writable})"
