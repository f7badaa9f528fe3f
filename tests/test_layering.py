"""The import rules that keep the layers honest, checked on the source itself.

1. A layer (lb, gateway, appserver, kvcache, minidb, mq) never imports another layer, and
   the kernel (minisys) imports none of them:
   they talk over sockets, so any of them can be swapped for the real product.
2. Nothing at runtime imports a third-party package: minisys runs on the standard library.
3. Sans-I/O modules (codecs and state machines) never import asyncio.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("lb", "gateway", "appserver", "kvcache", "minidb", "mq")
PACKAGES = ("minisys", *LAYERS)
# Modules that must stay pure (sans-I/O): codecs, state machines, data structures.
SANS_IO = (
    "minisys/resp/codec.py",
    "minisys/resp/encoder.py",
    "minisys/resp/inline.py",
    "minisys/resp/reply_parser.py",
    "minisys/resp/values.py",
    "minisys/resp/engine.py",
    "minisys/resp/connection_commands.py",
    "minisys/resp/config_params.py",
    "minisys/resp/info.py",
    "minisys/resp/url.py",
    "minisys/http/codec.py",
    "minisys/http/head.py",
    "minisys/http/framing.py",
    "minisys/http/serialize.py",
    "minisys/http/message.py",
    "minisys/beanstalk/codec.py",
    "minisys/proxyproto.py",
    "minisys/metrics.py",
    "minisys/config.py",
    # The layers' own state machines and data structures, driven by their asyncio shells.
    "lb/algorithms.py",
    "lb/health.py",
    "gateway/token_bucket.py",
    "gateway/breaker.py",
    "gateway/routes.py",
    "gateway/auth.py",
    "kvcache/cache.py",
    "minidb/record.py",
    "minidb/keydir.py",
    "mq/queue.py",
    "mq/job.py",
    "mq/tube.py",
    "mq/timers.py",
    "mq/records.py",
)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def runtime_files():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


def test_there_is_code_to_check():
    assert any(True for _ in runtime_files())


@pytest.mark.parametrize("package,path", list(runtime_files()), ids=str)
def test_import_rules(package, path):
    imported = imports_of(path)
    # The kernel imports no layer at all; a layer imports no other layer.
    other_layers = imported & (set(LAYERS) - {package})
    assert not other_layers, f"{path.relative_to(ROOT)} imports layer(s) {other_layers}"
    third_party = {
        name
        for name in imported
        if name not in sys.stdlib_module_names and name not in PACKAGES and name != "__future__"
    }
    assert not third_party, f"{path.relative_to(ROOT)} imports non-stdlib {third_party}"


@pytest.mark.parametrize("relpath", SANS_IO)
def test_sans_io_modules_do_not_import_asyncio(relpath):
    path = ROOT / relpath
    if not path.exists():
        pytest.skip(f"{relpath} does not exist yet")
    assert "asyncio" not in imports_of(path), f"{relpath} must stay sans-I/O"
