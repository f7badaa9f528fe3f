"""`python -m mq`'s command line: minisys's flags and beanstalkd's own (issue: drop-in)."""

from __future__ import annotations

import pytest

from mq.cli import BEANSTALKD_DEFAULT_FSYNC_MS, DEFAULT_PORT, parse_args
from mq.records import DEFAULT_COMPACT_MIN


def test_defaults():
    opts = parse_args([])
    assert (opts.server.host, opts.server.port) == ("127.0.0.1", DEFAULT_PORT)
    assert (opts.data_dir, opts.fsync, opts.max_job_size) == (None, "always", 65_535)
    assert opts.compact_min == DEFAULT_COMPACT_MIN and opts.unix_path is None


def test_beanstalkd_flags():
    opts = parse_args(["-l", "0.0.0.0", "-p", "11300", "-b", "/d", "-f", "250", "-z", "10"])
    assert (opts.server.host, opts.server.port, opts.data_dir) == ("0.0.0.0", 11300, "/d")
    assert (opts.fsync, opts.fsync_interval, opts.max_job_size) == ("interval", 0.25, 10)
    assert parse_args(["-b", "/d", "-f", "0"]).fsync == "always"
    assert parse_args(["-b", "/d", "-F"]).fsync == "no"
    # beanstalkd's -b without -f syncs every 50 ms.
    opts = parse_args(["-b", "/d"])
    assert (opts.fsync, opts.fsync_interval) == ("interval", BEANSTALKD_DEFAULT_FSYNC_MS / 1000)
    assert parse_args(["-s", "4096"]).compact_min == 4096
    assert parse_args(["-V"]).server.log_level == "debug"
    assert parse_args(["-l", "unix:/tmp/mq.sock"]).unix_path == "/tmp/mq.sock"


def test_minisys_flags():
    opts = parse_args(["--port", "0", "--data-dir", "/d", "--fsync", "everysec"])
    assert (opts.server.port, opts.fsync, opts.fsync_interval) == (0, "interval", 1.0)
    assert parse_args(["--data-dir", "/d", "--fsync", "no"]).fsync == "no"
    assert parse_args(["--data-dir", "/d"]).fsync == "always"


def test_version_and_ignored_user(capsys):
    assert parse_args(["-v"]) is None
    assert "1.12-mq" in capsys.readouterr().out
    parse_args(["-u", "nobody"])
    assert "ignored" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0", str((1 << 30) + 1)])
def test_job_size_bounds(size):
    with pytest.raises(SystemExit):
        parse_args(["-z", size])
