"""CONFIG GET / CONFIG SET parameters: names, current values, and the layer's set hooks.

On the request's journey this answers the questions clients ask a server about itself:
redis-benchmark starts by asking `CONFIG GET save` and `CONFIG GET appendonly`, learners
ask `CONFIG GET maxmemory`, and `CONFIG SET maxmemory 10mb` must reach kvcache's cache.
The engine registers the parameters every server has; a layer adds its own with a getter
and, if it can change at run time, a setter that raises ValueError("why") on bad input.

Simpler than the real thing: no config file, so CONFIG REWRITE always fails as it does for
a Redis started without one; values are strings as on the wire, no unit parsing here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from minisys.resp.values import CommandError


@dataclass
class ConfigParam:
    name: str
    get: Callable[[], object]
    set: Callable[[bytes], None] | None


class ConfigParams:
    """The parameters of one server, in registration order."""

    def __init__(self) -> None:
        self._params: dict[str, ConfigParam] = {}
        # redis-benchmark asks for these two before it starts; a store layer overrides.
        self.add("save", "")
        self.add("appendonly", "no")

    def add(
        self,
        name: str,
        value: object = None,
        *,
        get: Callable[[], object] | None = None,
        set: Callable[[bytes], None] | None = None,
    ) -> None:
        """Register (or replace) a parameter: a fixed value, or a getter (+ setter)."""
        getter = get if get is not None else (lambda: value)
        self._params[name.lower()] = ConfigParam(name.lower(), getter, set)

    def names(self) -> list[str]:
        return list(self._params)

    def get_matching(self, patterns: list[bytes]) -> dict[bytes, bytes]:
        """CONFIG GET pattern…: name → value for every name matching any glob pattern."""
        result: dict[bytes, bytes] = {}
        for raw in patterns:
            pattern = raw.decode("utf-8", "replace").lower()
            for name, param in self._params.items():
                if name.encode() not in result and fnmatch.fnmatchcase(name, pattern):
                    result[name.encode()] = _as_bytes(param.get())
        return result

    def set(self, name: bytes, value: bytes) -> None:
        """CONFIG SET name value, with Redis's error texts."""
        text = name.decode("utf-8", "replace")
        param = self._params.get(text.lower())
        if param is None:
            raise CommandError(
                f"ERR Unknown option or number of arguments for CONFIG SET - '{text}'"
            )
        if param.set is None:
            raise CommandError(
                f"ERR CONFIG SET failed (possibly related to argument '{text}') "
                "- can't set immutable config"
            )
        try:
            param.set(value)
        except ValueError as exc:
            raise CommandError(
                f"ERR CONFIG SET failed (possibly related to argument '{text}') - {exc}"
            ) from None


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"yes" if value else b"no"
    return str(value).encode()
