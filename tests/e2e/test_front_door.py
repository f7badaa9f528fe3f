"""The README's promises, checked as a new user would try them: word for word."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from minisys.testing import REPO_ROOT, ServerProcess
from minisys.topology import DEFAULT_PORTS

README = (REPO_ROOT / "README.md").read_text()


def readme_block_after(marker: str) -> str:
    """The first ``` code block after the line containing `marker`."""
    start = README.index(marker)
    match = re.search(r"```\n(.*?)\n```", README[start:], re.DOTALL)
    assert match, f"no code block after {marker!r} in README.md"
    return match.group(1).strip()


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_test_one():
    run_cmd = readme_block_after("Run the stack")
    test_cmd = readme_block_after("Run the tests")
    assert run_cmd == "python -m minisys"
    assert "\n" not in test_cmd
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci, ".ci/run must run the README's test command word for word"


def ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def test_readme_run_command_word_for_word(tmp_path):
    """`python -m minisys` as typed: default ports, ./minisys-data, one order, Ctrl-C."""
    command = readme_block_after("Run the stack").split()
    assert command[:2] == ["python", "-m"]
    if not ports_free([p for ports in DEFAULT_PORTS.values() for p in ports]):
        pytest.skip("a default port (6380, 8080, …) is taken on this machine")
    # Run it from an empty directory so ./minisys-data is new, as on a fresh clone.
    proc = ServerProcess(
        command[2], *command[3:], ready=["minisys"], timeout=120, port_flag=False,
        cwd=tmp_path, env={"NO_COLOR": "1"},
    )  # fmt: skip
    with proc:
        assert proc.port == DEFAULT_PORTS["lb"][0]
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=30)
        body = json.dumps({"user_id": 1, "items": [{"sku": "sku-1", "qty": 1}]})
        conn.request(
            "POST", "/place-order", body=body,
            headers={"Authorization": "Bearer minisys-demo-key",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        resp = conn.getresponse()
        assert resp.status == 201, resp.read()
        conn.close()
        assert (tmp_path / "minisys-data" / "minidb").is_dir()
        proc.signal(2)  # Ctrl-C
        assert proc.proc.wait(60) == 0, proc.output_tail()


def test_demo_walks_the_seed_story(tmp_path):
    """`python -m minisys demo` with no stack running starts one and tells the story."""
    done = subprocess.run(
        [sys.executable, "-m", "minisys", "demo", "--data-dir", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every step behaved as described" in done.stdout
    assert "429" in done.stdout
