"""The command table and dispatcher: one parsed request in, one reply value out.

On the request's journey this sits between `codec.py` (which produced `argv`, a list of
bytes) and a layer's handlers (kvcache's GET, minidb's EXEC). It answers what every Redis
server answers before a handler runs, with Redis's exact words:

    argv ─▶ look up argv[0] (any case)   no  ─▶ -ERR unknown command 'FOO', with args…
         ─▶ container? look up argv[1]    no  ─▶ -ERR unknown subcommand 'X'. Try CLIENT HELP.
         ─▶ arity (exactly n / at least -n) bad ─▶ -ERR wrong number of arguments for 'get'…
         ─▶ authenticated or no-auth?     no  ─▶ -NOAUTH Authentication required.
         ─▶ handler(session, argv) ─▶ reply value, or an awaitable of one

A handler is a plain function; it may return an awaitable (minidb waits for its group
commit's fsync) and the server keeps replies in order. It reports a user error by raising
`CommandError("ERR syntax error")` with the full text, code first.

The engine knows nothing about sockets (sans-I/O): `server.py` feeds it, and tests can
call `execute` directly. Per-connection state lives in `Session`; server-wide state
(client registry, INFO sections, CONFIG parameters, password) lives in `Engine`.

Simpler than the real thing: no ACL users (only `requirepass` for the "default" user),
no key-spec tables, no command stats.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from minisys.resp.codec import MAX_MULTIBULK, strict_int
from minisys.resp.config_params import ConfigParams
from minisys.resp.info import InfoSections
from minisys.resp.values import CommandError, RespError

log = logging.getLogger("minisys.resp.engine")

ERR_SYNTAX = "ERR syntax error"
ERR_NOT_INTEGER = "ERR value is not an integer or out of range"
ERR_NOT_FLOAT = "ERR value is not a valid float"
ERR_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
ERR_OOM = "OOM command not allowed when used memory > 'maxmemory'."
ERR_NOAUTH = "NOAUTH Authentication required."
ERR_WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
ERR_DB_RANGE = "ERR DB index is out of range"

# Redis cuts names and arguments quoted in "unknown command" errors at this many bytes.
ERROR_QUOTE_LIMIT = 128


class NoReply:
    """Return NO_REPLY from a handler to send nothing (QUIT-like and CLIENT REPLY OFF)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_REPLY"


NO_REPLY = NoReply()

Handler = Callable[["Session", list[bytes]], object]


def parse_int(value: bytes) -> int:
    """A signed 64-bit integer argument, or Redis's "not an integer" error."""
    n = strict_int(value)
    if n is None:
        raise CommandError(ERR_NOT_INTEGER)
    return n


def parse_float(value: bytes) -> float:
    """A float argument as Redis's strtold accepts it (no NaN), or its error."""
    try:
        if value != value.strip() or b"_" in value:
            raise ValueError
        result = float(value)
    except ValueError:
        raise CommandError(ERR_NOT_FLOAT) from None
    if result != result:
        raise CommandError(ERR_NOT_FLOAT)
    return result


def _quote(arg: bytes, limit: int) -> str:
    """Text of an argument as Redis puts it in an error: a C string, CR/LF → spaces."""
    text = arg.split(b"\0", 1)[0][:limit].decode("utf-8", "replace")
    return text.replace("\r", " ").replace("\n", " ")


def unknown_command_error(argv: list[bytes]) -> str:
    """Redis's text, e.g. "ERR unknown command 'FOO', with args beginning with: 'bar' "."""
    args = ""
    for arg in argv[1:]:
        if len(args) >= ERROR_QUOTE_LIMIT:
            break
        args += f"'{_quote(arg, ERROR_QUOTE_LIMIT - len(args))}' "
    name = _quote(argv[0], ERROR_QUOTE_LIMIT)
    return f"ERR unknown command '{name}', with args beginning with: {args}"


@dataclass(eq=False)
class Command:
    """One row of the command table. Arity counts the name: GET is 2, SET is -3."""

    name: str
    arity: int
    flags: frozenset[str]
    handler: Handler | None
    first_key: int = 0
    last_key: int = 0
    key_step: int = 0
    group: str = "generic"
    parent: Command | None = None
    subcommands: dict[bytes, Command] = field(default_factory=dict)

    # Redis 7 names subcommands "client|setname" in errors and COMMAND replies.
    fullname: str = field(init=False, default="")
    # The argument counts (name included) `Engine.execute` runs without `resolve()`:
    # exactly arity, or at least -arity; none for a container (its subcommand decides).
    lengths: range = field(init=False, default=range(0), repr=False)

    def __post_init__(self) -> None:
        self.fullname = f"{self.parent.name}|{self.name}" if self.parent else self.name
        self.set_lengths()

    def set_lengths(self) -> None:
        if self.subcommands:
            self.lengths = range(0)
        elif self.arity > 0:
            self.lengths = range(self.arity, self.arity + 1)
        else:
            self.lengths = range(-self.arity, MAX_MULTIBULK + 1)

    @property
    def summary(self) -> str:
        doc = (self.handler.__doc__ or "") if self.handler else ""
        return doc.strip().split("\n", 1)[0]


class CommandTable:
    """Name → Command. Layers fill it with @table.command(...) decorators."""

    def __init__(self) -> None:
        self._by_name: dict[bytes, Command] = {}
        self._commands: dict[str, Command] = {}

    def add(self, name: str, handler: Handler | None, arity: int, flags=(), **info) -> Command:
        """Register a command; a later registration of the same name replaces it."""
        cmd = Command(name.lower(), arity, frozenset(flags), handler, **info)
        self._commands[cmd.name] = cmd
        raw = cmd.name.encode()
        # Clients send "GET" or "get"; keeping both spellings skips a .lower() per call.
        self._by_name[raw] = cmd
        self._by_name[raw.upper()] = cmd
        return cmd

    def command(self, name: str, arity: int, flags=(), **info) -> Callable[[Handler], Handler]:
        """Decorator form of add: @table.command("get", arity=2, flags=("readonly",))."""

        def register(handler: Handler) -> Handler:
            self.add(name, handler, arity, flags, **info)
            return handler

        return register

    def subcommand(
        self, parent: str, name: str, arity: int, flags=(), **info
    ) -> Callable[[Handler], Handler]:
        """Decorator for "CLIENT SETNAME"-style subcommands; arity counts both words."""
        container = self._commands[parent.lower()]

        def register(handler: Handler) -> Handler:
            sub = Command(name.lower(), arity, frozenset(flags), handler, parent=container, **info)
            container.subcommands[sub.name.encode()] = sub
            container.set_lengths()
            return handler

        return register

    def lookup(self, name: bytes) -> Command | None:
        return self._by_name.get(name) or self._by_name.get(name.lower())

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._commands

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __len__(self) -> int:
        return len(self._commands)


class Session:
    """One client connection's state, as CLIENT LIST shows it."""

    def __init__(self, engine: Engine, client_id: int, peer: tuple, now: float) -> None:
        self.engine = engine
        self.id = client_id
        self.peer = peer
        self.proto = 2  # RESP2 until HELLO 3
        self.db = 0
        self.name: bytes | None = None
        self.lib_name = b""
        self.lib_ver = b""
        self.authenticated = engine.requirepass is None
        self.created = now
        self.last_command = "NULL"
        self.closing = False  # set by QUIT: the server closes after writing the reply
        self.server_state = engine.state  # whatever the layer attached (its store)
        self.state: dict[str, object] = {}  # per-connection layer data (MULTI queue…)
        # While set, `Engine.execute` hands every command to it instead (minidb between
        # MULTI and EXEC, which queues them): a check here costs a layer without
        # transactions ~250 instructions per command; overriding `execute` cost minidb
        # a Python call per command (~1.2k).
        self.intercept: Handler | None = None

    @property
    def addr(self) -> str:
        host, port = (self.peer or ("", 0))[:2]
        return f"{host}:{port}"


class Engine:
    """Server-wide RESP state and the dispatcher. See connection_commands for the rest."""

    def __init__(
        self,
        table: CommandTable,
        *,
        state: object = None,
        requirepass: str | None = None,
        databases: int = 1,
        component: str = "minisys",
        clock: Callable[[], float] = time.time,
        connection_commands: bool = True,
    ) -> None:
        self.table = table
        self._fast = table._by_name  # name as sent → Command, for execute's fast path
        self.state = state
        self.requirepass = requirepass
        self.databases = databases
        self.component = component
        self.clock = clock
        self.started_at = clock()
        self.tcp_port = 0
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self.total_connections = 0
        self.total_commands = 0
        self.config = ConfigParams()
        self.info = InfoSections(self)
        self.config.add("databases", databases)
        if connection_commands:
            # Imported here: those handlers use Session and Engine from this module.
            from minisys.resp.connection_commands import add_connection_commands

            add_connection_commands(table)

    def open_session(self, peer: tuple = ("", 0)) -> Session:
        session = Session(self, next(self._ids), peer, self.clock())
        self.sessions[session.id] = session
        self.total_connections += 1
        return session

    def close_session(self, session: Session) -> None:
        self.sessions.pop(session.id, None)

    def resolve(self, argv: list[bytes]) -> Command | RespError:
        """The command argv names (subcommand included), or Redis's error for it.

        Checks existence and arity only; MULTI uses it to refuse a bad command at queue time.
        """
        cmd = self.table.lookup(argv[0])
        if cmd is None:
            return RespError(unknown_command_error(argv))
        if cmd.subcommands and len(argv) > 1:
            sub = cmd.subcommands.get(argv[1].lower())
            if sub is None:
                name = _quote(argv[1], ERROR_QUOTE_LIMIT)
                return RespError(f"ERR unknown subcommand '{name}'. Try {cmd.name.upper()} HELP.")
            cmd = sub
        n = len(argv)
        arity = cmd.arity
        if (arity > 0 and n != arity) or n < -arity:
            return RespError(f"ERR wrong number of arguments for '{cmd.fullname}' command")
        return cmd

    def execute(self, session: Session, argv: list[bytes]) -> object:
        """Run one command. Returns a reply value or an awaitable of one; never raises."""
        if session.intercept is not None:
            return session.intercept(session, argv)
        cmd = self._fast.get(argv[0])
        # The common case (a known plain command, right arity) skips resolve()'s calls.
        if cmd is None or len(argv) not in cmd.lengths:
            cmd = self.resolve(argv)
            if cmd.__class__ is RespError:
                return cmd
        if not session.authenticated and "no-auth" not in cmd.flags:
            return RespError(ERR_NOAUTH)
        self.total_commands += 1
        session.last_command = cmd.fullname
        try:
            return cmd.handler(session, argv)
        except RespError as exc:
            return exc
        except Exception:
            log.exception("command %s failed", cmd.fullname)
            return RespError(f"ERR internal error in '{cmd.fullname}' (see server log)")
