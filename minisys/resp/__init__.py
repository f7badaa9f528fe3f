"""RESP (REdis Serialization Protocol) for minisys: the shared kernel of kvcache and minidb.

Map of the package, in the order a request meets it:

- `values.py`        — Python values for RESP types (SimpleString, RespError, Verbatim…).
- `codec.py`         — sans-I/O incremental parser: `RespParser.feed` / `next_command`
                       (server side, multibulk and inline) / `next_reply` (client side).
- `inline.py`        — Redis's `sdssplitargs` quoting for inline commands (`telnet`, `nc`).
- `reply_parser.py`  — one RESP2/RESP3 reply value out of a buffer (client side).
- `encoder.py`       — `encode_command(*args)`, `encode_reply(value, proto)`.
- `engine.py`        — command table, `Session`, `Engine.execute` (arity, unknown command,
                       auth) — sans-I/O, a handler may return an awaitable.
- `connection_commands.py` — PING ECHO QUIT SELECT CLIENT HELLO COMMAND CONFIG TIME INFO
                       AUTH: what every Redis client sends before its first real command.
- `config_params.py` — CONFIG GET/SET parameters a layer registers (with set hooks).
- `info.py`          — INFO sections a layer fills in (keyspace, memory, stats…).
- `server.py`        — the asyncio Protocol shell: parse all buffered, execute, one write.
- `client.py`        — asyncio client with pipelining, a small pool, timeouts, reconnect.
- `url.py`           — `redis://host:port/db` URLs.
- `demo.py`          — a 60-line GET/SET server: the recipe kvcache and minidb follow
                       (`python -m minisys.resp --port 6390`).

`PROTOCOL.md` shows the wire format with hex examples (a test parses them); `README.md`
says how the pieces fit and how to try them with redis-cli, redis-py and redis-benchmark.

Simpler than the real thing: see each module; in short, Redis 7.0's wire behaviour and
error texts, without ACLs, pub/sub, cluster or client tracking.
"""

from minisys.resp.codec import RespParser
from minisys.resp.encoder import encode_command, encode_reply
from minisys.resp.reply_parser import INCOMPLETE
from minisys.resp.values import (
    NULL_ARRAY,
    ProtocolError,
    Push,
    RespError,
    SimpleString,
    Verbatim,
)

__all__ = [
    "INCOMPLETE",
    "NULL_ARRAY",
    "ProtocolError",
    "Push",
    "RespError",
    "RespParser",
    "SimpleString",
    "Verbatim",
    "encode_command",
    "encode_reply",
]
