"""The outbox file: an mbox that takes each Message-ID at most once.

"Sending" an e-mail here means appending it to an mbox file, the classic Unix mailbox
format any mail reader (mutt -f, Thunderbird, Python's `mailbox.mbox`) can open:

    From shop@minisys.local Sun Nov 29 20:41:07 2026      ← separator line
    From: minisys shop <shop@minisys.local>
    …headers…
    Message-ID: <order-17@minisys.local>
                                                         ← blank line: end of headers
    Hello Ada Lovelace,
    >From the body, a line starting "From " is quoted     ← mboxrd escaping
                                                         ← blank line: end of message

Why idempotent: the queue delivers *at least once*. A worker that dies after appending
but before deleting its job, a TTR that expires while a worker is stalled, an appserver
that puts a job twice from its outbox: each leads to the same job being processed again.
So the sender remembers every Message-ID it has written and skips a repeat. That turns
at-least-once delivery into exactly-once *effect*.

Several worker tasks (and several worker processes) may share one file, so an append
takes an exclusive `flock` on the file, first reads whatever others appended since it last
looked (collecting their Message-IDs), then decides. Each message goes out in a single
write and is fsynced before we report success, because success means the job gets deleted.

Read next: `runner.py`, which calls `append` for each job.

Simpler than the real thing: a real mail system hands the message to an SMTP server and
dedupes (if at all) by Message-ID in the recipient's store; a torn last message (crash
mid-write) is not repaired.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from pathlib import Path
from typing import BinaryIO

SEPARATOR_SENDER = "shop@minisys.local"
# mboxrd: quote lines that start with zero or more ">" followed by "From ".
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^message-id:\s*(<[^>\r\n]*>)", re.IGNORECASE)


def frame(message: bytes, now: float) -> bytes:
    """One mboxrd entry: separator line, the message with From-quoting, a blank line."""
    body = _FROM_LINE.sub(rb">\1", message.replace(b"\r\n", b"\n"))
    if not body.endswith(b"\n"):
        body += b"\n"
    separator = f"From {SEPARATOR_SENDER} {time.asctime(time.gmtime(now))}\n".encode()
    return separator + body + b"\n"


def message_ids(data: bytes) -> list[str]:
    """The Message-IDs in whole mbox entries, read from their headers only."""
    found = []
    in_headers = False
    previous_blank = True
    for line in data.split(b"\n"):
        if previous_blank and line.startswith(b"From "):
            in_headers = True
        elif in_headers and line == b"":
            in_headers = False
        elif in_headers:
            match = _MESSAGE_ID.match(line)
            if match:
                found.append(match.group(1).decode("ascii", "replace"))
        previous_blank = line == b""
    return found


class MboxOutbox:
    """Appends messages to an mbox file, each Message-ID at most once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._sent: set[str] = set()
        self._scanned = 0  # bytes of the file already read for Message-IDs
        self._lock = threading.Lock()  # worker tasks call us from threads

    def append(self, message_id: str, message: bytes, now: float | None = None) -> bool:
        """Write the message unless its Message-ID was written before. True if written.

        Blocking (file lock, fsync): call it from a thread (`asyncio.to_thread`).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "ab+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                self._catch_up(f)
                if message_id in self._sent:
                    return False
                f.write(frame(message, time.time() if now is None else now))
                f.flush()
                os.fsync(f.fileno())
                self._sent.add(message_id)
                self._scanned = f.tell()
                return True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _catch_up(self, f: BinaryIO) -> None:
        size = os.fstat(f.fileno()).st_size
        if size < self._scanned:  # the file was truncated or replaced: start over
            self._sent.clear()
            self._scanned = 0
        if size > self._scanned:
            f.seek(self._scanned)
            self._sent.update(message_ids(f.read(size - self._scanned)))
            self._scanned = size
