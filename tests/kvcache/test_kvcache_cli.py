"""`python -m kvcache` flags: memory units, policy, bad flags, graceful stop."""

from __future__ import annotations

import subprocess
import sys

from minisys.resp import SimpleString
from minisys.testing import REPO_ROOT, ServerProcess


def test_flags_reach_config(connect) -> None:
    with ServerProcess("kvcache", "--max-memory", "1mb", "--policy", "volatile-ttl") as proc:
        with connect(proc.port) as c:
            assert c.call("CONFIG", "GET", "maxmemory") == [b"maxmemory", b"1048576"]
            assert c.call("CONFIG", "GET", "maxmemory-policy") == [
                b"maxmemory-policy",
                b"volatile-ttl",
            ]
            assert c.call("SET", "k", "v") == SimpleString("OK")
        assert proc.terminate() == 0


def test_bad_flags_exit_with_usage() -> None:
    for args in (["--max-memory", "lots"], ["--policy", "lfu"]):
        result = subprocess.run(
            [sys.executable, "-m", "kvcache", "--port", "0", *args],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2
        assert "usage: python -m kvcache" in result.stderr
