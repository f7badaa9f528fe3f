"""Fault seams: deterministic ways to make minidb crash or fail, off by default.

Journey: tests (and a curious learner) pass `faults=Faults(...)` to `open_db`. `merge.py`
calls `faults.point("merge.rename_data")` at every step of a merge, and the engine calls
`faults.before_fsync()` before every fsync. A seam that fires raises `SimulatedCrash` (the
process "dies" at that exact step; the test then abandons the db object without any
cleanup and reopens the directory) or `OSError` for an injected fsync failure.

Why seams instead of monkeypatching: the steps are named in one place, the production
code says where it could die, and the crash tests can enumerate every step and every
occurrence of it (`Faults.record()` lists the points a normal run passes).
"""

from __future__ import annotations

import errno


class SimulatedCrash(BaseException):
    """Raised at a fault point: the process is considered dead from here on.

    A BaseException so that no `except Exception` cleanup path runs, as in a real crash.
    """


class Faults:
    """Crash at the `occurrence`-th pass through `crash_at`; fail the `fail_fsync_at`-th fsync."""

    def __init__(
        self,
        crash_at: str | None = None,
        occurrence: int = 1,
        fail_fsync_at: int | None = None,
        record: bool = False,
    ) -> None:
        self.crash_at = crash_at
        self.occurrence = occurrence
        self.fail_fsync_at = fail_fsync_at
        self.seen: list[str] = []
        self._record = record
        self._hits = 0
        self._fsyncs = 0

    def point(self, name: str) -> None:
        if self._record:
            self.seen.append(name)
        if name == self.crash_at:
            self._hits += 1
            if self._hits == self.occurrence:
                raise SimulatedCrash(f"simulated crash at {name} #{self.occurrence}")

    def before_fsync(self) -> None:
        self._fsyncs += 1
        if self._fsyncs == self.fail_fsync_at:
            raise OSError(errno.EIO, "simulated fsync failure")


NO_FAULTS = Faults()
