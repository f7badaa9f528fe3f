"""The engine against a plain dict across puts, deletes, batches, merges and reopens."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from minidb import open_db

KEYS = st.sampled_from([b"a", b"b", b"c", b"key:1", b"key:2", b"", b"\x00\xff"])
VALUES = st.binary(max_size=40)
OPS = st.lists(st.tuples(KEYS, st.none() | VALUES), min_size=2, max_size=5)


class DBvsDict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="minidb-stateful-"))
        self.model: dict[bytes, bytes] = {}
        self.db = self._open()

    def _open(self):
        return open_db(self.dir, fsync="no", auto_merge=False, max_file_size=400)

    @rule(key=KEYS, value=VALUES)
    def put(self, key, value):
        self.db.put(key, value)
        self.model[key] = value

    @rule(key=KEYS)
    def delete(self, key):
        assert self.db.delete(key) == (key in self.model)
        self.model.pop(key, None)

    @rule(ops=OPS)
    def batch(self, ops):
        self.db.write_batch(ops)
        for key, value in ops:
            if value is None:
                self.model.pop(key, None)
            else:
                self.model[key] = value

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def flush_all(self):
        self.db.flush_all()
        self.model.clear()

    @rule()
    def merge(self):
        self.db.merge_state.join()  # a background merge may still be running
        assert self.db.merge()
        stats = self.db.stats()
        assert stats.dead_bytes <= stats.data_bytes

    @rule()
    def background_merge(self):
        # Runs beside the following rules; the invariant must hold at every step anyway.
        self.db.merge(wait=False)

    @rule()
    def reopen(self):
        self.db.close()
        self.db = self._open()

    @rule()
    def crash_and_reopen(self):
        # Process death: what reached the OS survives, nothing else runs.
        self.db.abandon()
        self.db = self._open()

    @invariant()
    def same_contents(self):
        assert sorted(self.db.keys()) == sorted(self.model)
        for key, value in self.model.items():
            assert self.db.get(key) == value
        stats = self.db.stats()
        assert stats.keys == len(self.model)
        assert stats.live_bytes == sum(21 + len(k) + len(v) for k, v in self.model.items())

    def teardown(self):
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)


DBvsDict.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
TestDBvsDict = DBvsDict.TestCase
