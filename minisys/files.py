"""Durable files: whole writes, data syncs and renames that survive a power loss.

At the far end of the request's journey, minidb's data files (`minidb/datafile.py`,
`minidb/merge.py`) and mq's journal (`mq/journal.py`) put acknowledged writes on disk.
Both need the same three promises from the OS, and each has a trap:

- **Every byte written.** `write`/`pwrite` may take fewer bytes than given (a signal, the
  last free block of a disk); the rest must follow at the right offset.
- **The data synced.** `fdatasync` flushes the data and the file size but skips the
  modification time: one disk write fewer than `fsync` where the OS has it.
- **A rename synced.** A rename is a change to the *directory*, not to the file: until the
  directory itself is fsynced, a power loss can bring back the old name.

Simpler than the real thing: databases also handle `EINTR` storms, `O_DIRECT` alignment and
fsync failures that leave the page cache lying (PostgreSQL's "fsyncgate": after a failed
fsync, the only safe move is to crash and recover); we report an `OSError` and let the
caller answer with an error.
"""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` at the file's position, however many writes it takes."""
    written = os.write(fd, data)
    if written == len(data):  # the usual case: no memoryview to make and slice
        return
    view = memoryview(data)[written:]
    while view:
        view = view[os.write(fd, view) :]


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of `data` at `offset` (the file position does not move)."""
    written = os.pwrite(fd, data, offset)
    if written == len(data):  # the usual case
        return
    view = memoryview(data)[written:]
    offset += written
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def fdatasync(fd: int) -> None:
    """fdatasync where the OS has it (flushes data and the size, skips mtime), else fsync."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a create, rename or unlink in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
