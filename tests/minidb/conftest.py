"""Shared helpers for minidb tests: open/reopen databases and read their whole contents."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from minidb import DB, open_db

# Small files so a handful of records already spans several files and rotations.
SMALL_FILE = 256


def contents(db: DB) -> dict[bytes, bytes]:
    """Everything the db holds, read back through get() (so every CRC is checked)."""
    out = {}
    for key in db:
        value = db.get(key)
        assert value is not None, key
        out[key] = value
    return out


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "LOCK").unlink(missing_ok=True)
    return dst


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    return tmp_path / "db"


@pytest.fixture
def opener(db_dir: Path):
    """open_db with test defaults; every db it opened is closed at teardown."""
    opened: list[DB] = []

    def _open(path: Path | None = None, **options) -> DB:
        options.setdefault("fsync", "no")
        options.setdefault("auto_merge", False)
        db = open_db(path or db_dir, **options)
        opened.append(db)
        return db

    yield _open
    for db in opened:
        if not db.closed:
            db.close()
