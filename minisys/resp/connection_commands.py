"""The commands every Redis client sends before (or besides) its real work.

On the request's journey these run before kvcache's GET or minidb's SET ever see a byte:
redis-py 8 opens with `HELLO 3`, `CLIENT MAINT_NOTIFICATIONS ON …` and two
`CLIENT SETINFO`; redis-benchmark asks `CONFIG GET save` and `CONFIG GET appendonly`;
redis-cli may send `AUTH`, `SELECT`, `COMMAND DOCS`. Answering them exactly as Redis 7
does lets real clients talk to our stores unchanged.

| command                                   | reply                                     |
|-------------------------------------------|-------------------------------------------|
| PING [msg]                                | +PONG, or msg as a bulk                   |
| ECHO msg / TIME / QUIT                    | bulk / [secs, micros] / +OK then close    |
| SELECT n                                  | +OK for 0…databases-1, else out of range  |
| HELLO [2|3 [AUTH u p] [SETNAME n]]        | map: server version proto id mode role…   |
| AUTH [user] pass                          | +OK / -WRONGPASS / "no password" error    |
| CLIENT ID/SETNAME/GETNAME/SETINFO/LIST/   | Redis 7.2's answers                       |
|   INFO/MAINT_NOTIFICATIONS/HELP           |                                           |
| COMMAND [COUNT|DOCS|INFO|LIST]            | built from the command table              |
| CONFIG GET/SET/RESETSTAT/REWRITE          | via engine.config (config_params.py)      |
| INFO [section…]                           | via engine.info (info.py), verbatim in R3 |

Simpler than the real thing: one "default" user, no CLIENT KILL/PAUSE/TRACKING.
"""

from __future__ import annotations

import hmac

from minisys.resp.engine import (
    ERR_DB_RANGE,
    ERR_SYNTAX,
    ERR_WRONGPASS,
    NO_REPLY,
    CommandTable,
    Session,
    parse_int,
)
from minisys.resp.info import REDIS_VERSION
from minisys.resp.values import CommandError, SimpleString, Verbatim

OK = SimpleString("OK")

# Client names and library names may hold only printable ASCII without spaces.
_NAME_BYTES = frozenset(range(0x21, 0x7F))


def add_connection_commands(table: CommandTable) -> None:
    """Register PING … INFO in `table`, keeping any command the layer registered itself."""
    for name, arity, flags, handler in _COMMANDS:
        if name in table:
            continue
        table.add(name, handler, arity, flags, group="connection")
        for sub, sub_arity, sub_flags, sub_handler in _SUBCOMMANDS.get(name, ()):
            table.subcommand(name, sub, sub_arity, sub_flags, group="connection")(sub_handler)


def ping(session: Session, argv: list[bytes]) -> object:
    """Ping the server."""
    if len(argv) > 2:
        raise CommandError("ERR wrong number of arguments for 'ping' command")
    return argv[1] if len(argv) == 2 else SimpleString("PONG")


def echo(session: Session, argv: list[bytes]) -> object:
    """Echo the given string."""
    return argv[1]


def quit_(session: Session, argv: list[bytes]) -> object:
    """Close the connection."""
    session.closing = True
    return OK


def select(session: Session, argv: list[bytes]) -> object:
    """Change the selected database for the current connection."""
    index = parse_int(argv[1])
    if not 0 <= index < session.engine.databases:
        raise CommandError(ERR_DB_RANGE)
    session.db = index
    return OK


def time_(session: Session, argv: list[bytes]) -> object:
    """Return the current server time."""
    micros = int(session.engine.clock() * 1_000_000)
    return [b"%d" % (micros // 1_000_000), b"%d" % (micros % 1_000_000)]


def security_warning(session: Session, argv: list[bytes]) -> object:
    """An HTTP request sent to a RESP port: Redis closes without a word, and so do we."""
    session.closing = True
    return NO_REPLY


def _check_password(session: Session, user: bytes, password: bytes) -> None:
    engine = session.engine
    if user != b"default":
        raise CommandError(ERR_WRONGPASS)
    if engine.requirepass is not None and not hmac.compare_digest(
        password, engine.requirepass.encode()
    ):
        raise CommandError(ERR_WRONGPASS)
    session.authenticated = True


def auth(session: Session, argv: list[bytes]) -> object:
    """Authenticate to the server."""
    if len(argv) > 3:
        raise CommandError(ERR_SYNTAX)
    if len(argv) == 2 and session.engine.requirepass is None:
        raise CommandError(
            "ERR AUTH <password> called without any password configured for the default "
            "user. Are you sure your configuration is correct?"
        )
    user, password = (b"default", argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    _check_password(session, user, password)
    return OK


def hello(session: Session, argv: list[bytes]) -> object:
    """Handshake with the server, optionally switching protocol and authenticating."""
    version = 0
    if len(argv) >= 2:
        try:
            version = parse_int(argv[1])
        except CommandError:
            raise CommandError("ERR Protocol version is not an integer or out of range") from None
        if version not in (2, 3):
            raise CommandError("NOPROTO unsupported protocol version")
    name = None
    j = 2
    while j < len(argv):
        option = argv[j].lower()
        more = len(argv) - 1 - j
        if option == b"auth" and more >= 2:
            _check_password(session, argv[j + 1], argv[j + 2])
            j += 3
        elif option == b"setname" and more >= 1:
            name = argv[j + 1]
            j += 2
        else:
            text = argv[j].decode("utf-8", "replace")
            raise CommandError(f"ERR Syntax error in HELLO option '{text}'")
    if not session.authenticated:
        raise CommandError(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise "
            "the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the "
            "client and select the RESP protocol version at the same time"
        )
    if name is not None:
        _set_name(session, name)
    if version:
        session.proto = version
    return {
        b"server": b"redis",
        b"version": REDIS_VERSION.encode(),
        b"proto": session.proto,
        b"id": session.id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }


def _set_name(session: Session, name: bytes) -> None:
    if not _NAME_BYTES.issuperset(name):
        raise CommandError(
            "ERR Client names cannot contain spaces, newlines or special characters."
        )
    session.name = name or None


def client_id(session: Session, argv: list[bytes]) -> object:
    """Return the ID of the current connection."""
    return session.id


def client_setname(session: Session, argv: list[bytes]) -> object:
    """Set the current connection name."""
    _set_name(session, argv[2])
    return OK


def client_getname(session: Session, argv: list[bytes]) -> object:
    """Return the name of the current connection."""
    return session.name


def client_setinfo(session: Session, argv: list[bytes]) -> object:
    """Set client or connection specific info (library name and version)."""
    attr = argv[2].lower()
    if attr not in (b"lib-name", b"lib-ver"):
        text = argv[2].decode("utf-8", "replace")
        raise CommandError(f"ERR Unrecognized option '{text}'")
    if not _NAME_BYTES.issuperset(argv[3]):
        raise CommandError(
            f"ERR {attr.decode()} cannot contain spaces, newlines or special characters."
        )
    if attr == b"lib-name":
        session.lib_name = argv[3]
    else:
        session.lib_ver = argv[3]
    return OK


def client_maint_notifications(session: Session, argv: list[bytes]) -> object:
    """Accept redis-py 8's opt-in to maintenance pushes (we never send any)."""
    return OK


def _client_line(session: Session, now: float) -> str:
    name = (session.name or b"").decode("ascii", "replace")
    return (
        f"id={session.id} addr={session.addr} laddr=127.0.0.1:{session.engine.tcp_port} "
        f"fd=-1 name={name} age={int(now - session.created)} idle=0 flags=N "
        f"db={session.db} sub=0 psub=0 ssub=0 multi=-1 cmd={session.last_command} "
        f"user=default redir=-1 resp={session.proto} "
        f"lib-name={session.lib_name.decode('ascii', 'replace')} "
        f"lib-ver={session.lib_ver.decode('ascii', 'replace')}\n"
    )


def client_list(session: Session, argv: list[bytes]) -> object:
    """List the client connections (minimal fields)."""
    now = session.engine.clock()
    lines = [_client_line(s, now) for s in session.engine.sessions.values()]
    return Verbatim(b"txt", "".join(lines).encode())


def client_info(session: Session, argv: list[bytes]) -> object:
    """Return information about the current connection."""
    return Verbatim(b"txt", _client_line(session, session.engine.clock()).encode())


def _help(name: str, lines: list[str]) -> list[SimpleString]:
    head = f"{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    return [SimpleString(s) for s in [head, *lines, "HELP", "    Print this help."]]


def client_help(session: Session, argv: list[bytes]) -> object:
    """Show helpful text about the different subcommands."""
    return _help(
        "CLIENT", ["ID", "SETNAME <name>", "GETNAME", "SETINFO <attr> <value>", "LIST", "INFO"]
    )


def _command_info(cmd) -> list:
    flags = {SimpleString(f) for f in sorted(cmd.flags)}
    subs = [_command_info(s) for s in cmd.subcommands.values()]
    return [
        cmd.fullname.encode(),
        cmd.arity,
        flags,
        cmd.first_key,
        cmd.last_key,
        cmd.key_step,
        set(),
        set(),
        [],
        subs,
    ]


def command_(session: Session, argv: list[bytes]) -> object:
    """Get array of Redis command details."""
    return [_command_info(cmd) for cmd in session.engine.table]


def command_count(session: Session, argv: list[bytes]) -> object:
    """Get total number of Redis commands."""
    return len(session.engine.table)


def command_list(session: Session, argv: list[bytes]) -> object:
    """Get an array of Redis command names."""
    return [cmd.name.encode() for cmd in session.engine.table]


def command_info(session: Session, argv: list[bytes]) -> object:
    """Get array of specific Redis command details, or all when no argument is given."""
    if len(argv) == 2:
        return command_(session, argv)
    table = session.engine.table
    return [_command_info(c) if (c := table.lookup(n)) else None for n in argv[2:]]


def _docs(cmd) -> dict:
    doc = {b"summary": cmd.summary.encode(), b"since": b"1.0.0", b"group": cmd.group.encode()}
    if cmd.subcommands:
        doc[b"subcommands"] = {s.fullname.encode(): _docs(s) for s in cmd.subcommands.values()}
    return doc


def command_docs(session: Session, argv: list[bytes]) -> object:
    """Get array of specific Redis command documentation (what redis-cli shows as hints)."""
    table = session.engine.table
    wanted = [table.lookup(n) for n in argv[2:]] if len(argv) > 2 else list(table)
    return {cmd.name.encode(): _docs(cmd) for cmd in wanted if cmd is not None}


def config_get(session: Session, argv: list[bytes]) -> object:
    """Get the values of configuration parameters."""
    return session.engine.config.get_matching(argv[2:])


def config_set(session: Session, argv: list[bytes]) -> object:
    """Set configuration parameters to the given values."""
    if len(argv) % 2:
        raise CommandError("ERR wrong number of arguments for 'config|set' command")
    for i in range(2, len(argv), 2):
        session.engine.config.set(argv[i], argv[i + 1])
    return OK


def config_resetstat(session: Session, argv: list[bytes]) -> object:
    """Reset the stats returned by INFO."""
    session.engine.total_commands = 0
    session.engine.total_connections = 0
    return OK


def config_rewrite(session: Session, argv: list[bytes]) -> object:
    """Rewrite the configuration file (there is none)."""
    raise CommandError("ERR The server is running without a config file")


def config_help(session: Session, argv: list[bytes]) -> object:
    """Show helpful text about the different subcommands."""
    return _help("CONFIG", ["GET <pattern>", "SET <directive> <value>", "RESETSTAT", "REWRITE"])


def info(session: Session, argv: list[bytes]) -> object:
    """Get information and statistics about the server."""
    return Verbatim(b"txt", session.engine.info.render(argv[1:]).encode())


_COMMANDS = [
    ("ping", -1, ("fast", "stale"), ping),
    ("echo", 2, ("fast",), echo),
    ("quit", -1, ("no-auth", "fast"), quit_),
    ("select", 2, ("fast", "loading", "stale"), select),
    ("time", 1, ("fast", "loading", "stale"), time_),
    ("auth", -2, ("no-auth", "fast", "noscript"), auth),
    ("hello", -1, ("no-auth", "fast", "noscript"), hello),
    ("client", -2, ("sentinel",), None),
    ("command", -1, ("loading", "stale"), command_),
    ("config", -2, (), None),
    ("info", -1, ("loading", "stale"), info),
    ("post", -1, ("no-auth", "loading", "stale"), security_warning),
    ("host:", -1, ("no-auth", "loading", "stale"), security_warning),
]

_SUBCOMMANDS = {
    "client": [
        ("id", 2, ("noscript", "loading", "stale"), client_id),
        ("setname", 3, ("noscript", "loading", "stale"), client_setname),
        ("getname", 2, ("noscript", "loading", "stale"), client_getname),
        ("setinfo", 4, ("noscript", "loading", "stale"), client_setinfo),
        ("maint_notifications", -3, ("noscript", "loading", "stale"), client_maint_notifications),
        ("list", -2, ("admin", "noscript", "loading", "stale"), client_list),
        ("info", 2, ("noscript", "loading", "stale"), client_info),
        ("help", 2, ("loading", "stale"), client_help),
    ],
    "command": [
        ("count", 2, ("loading", "stale"), command_count),
        ("docs", -2, ("loading", "stale"), command_docs),
        ("info", -2, ("loading", "stale"), command_info),
        ("list", -2, ("loading", "stale"), command_list),
    ],
    "config": [
        ("get", -3, ("admin", "noscript", "loading", "stale"), config_get),
        ("set", -4, ("admin", "noscript", "loading", "stale"), config_set),
        ("resetstat", 2, ("admin", "noscript", "loading", "stale"), config_resetstat),
        ("rewrite", 2, ("admin", "noscript", "loading", "stale"), config_rewrite),
        ("help", 2, ("loading", "stale"), config_help),
    ],
}
