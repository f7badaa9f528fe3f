"""Incremental RESP parser: bytes in any split → commands (server side) or replies (client).

On the request's journey this is the first thing a kvcache or minidb connection does with
the bytes the kernel hands it, and the last thing `client.py` does with a server's answer.
It is sans-I/O: `feed(data)` appends bytes, `next_command()` / `next_reply()` return one
complete value or "not yet"; no sockets, no asyncio, no clocks.

How it stays fast in Python: the unread bytes live in one `bytes` object plus a read
offset, and every step is a C-level call (`find`, `split`, slicing, a dict lookup), never
a loop over single bytes. `next_command()` has three paths, tried in this order:

    a read of many bytes   one split at every CRLF, then whole commands checked
                           token by token (`_split_commands`): a pipeline
    a short read           one whole command, split at every CRLF and checked
    anything else          the general state machine (`_next_command_general`)

The fast paths only take input they can read exactly as the general one would, and
leave everything else (cut commands, big arguments, inline, errors) to it.

Two tricks keep big or slow inputs linear instead of quadratic:
- a command whose arguments arrive over many reads keeps its finished arguments in
  `_args` and resumes at the next `$`, so nothing is parsed twice;
- while a large bulk is incomplete we know exactly how many bytes it needs (`_need`),
  so new reads are parked in a list and joined once, instead of re-copying the buffer on
  every read (Redis's "big arg" path, PROTO_MBULK_BIG_ARG, has the same aim).

Request grammar (what Redis accepts, networking.c processMultibulkBuffer / Inline):

    request   = multibulk | inline
    multibulk = "*" count CRLF { "$" length CRLF bytes CRLF }   ; count <= 0: ignored
    inline    = any line not starting with "*", split like redis-cli quoting (inline.py)

Replies (client side) are any RESP2/RESP3 value; see `reply_parser.py`.

Simpler than the real thing: the limits and error texts are Redis 7.0's, but the query
buffer limit is checked only when a command is incomplete, and a big bulk is joined once
rather than read into a preallocated buffer.
"""

from __future__ import annotations

from minisys.resp.inline import UnbalancedQuotes, split_inline
from minisys.resp.reply_parser import INCOMPLETE, ReplyParser
from minisys.resp.values import ProtocolError

# Redis's PROTO_INLINE_MAX_SIZE: the longest inline request or count line without CRLF.
MAX_INLINE = 64 * 1024
# Redis's default proto-max-bulk-len: the largest single argument.
MAX_BULK = 512 * 1024 * 1024
# Redis 7.0 accepts multibulk counts up to INT_MAX (1024*1024 before 6.2).
MAX_MULTIBULK = 2**31 - 1
# Redis's client-query-buffer-limit: unparsed bytes plus parsed arguments of one command.
MAX_QUERY = 1024 * 1024 * 1024
# Before AUTH succeeds (when a password is set) Redis allows only tiny commands.
MAX_UNAUTH_MULTIBULK = 10
MAX_UNAUTH_BULK = 16 * 1024

# b"$0\r\n" … b"$99\r\n" → 0 … 99: the general parser's headers of short arguments.
_SHORT_HEADERS = {b"$%d\r\n" % n: n for n in range(100)}
# b"*1\r\n" … b"*9\r\n": most commands have fewer than ten arguments (and pass the
# unauthenticated limit of ten).
_SHORT_COUNTS = {b"*%d\r\n" % n: n for n in range(1, 10)}

# The split fast path (`_split_commands`) takes at most this many unread bytes (one read of
# the kernel's buffer, minisys/reads.py): past it a big argument is arriving, which the
# general parser joins once instead of copying it into tokens.
SPLIT_MAX_BYTES = 64 * 1024
# Reads shorter than this (one GET or SET) take the one-command fast path in next_command:
# for a single command the split's setup costs more than it saves (callgrind, one GET per
# read: ~2,000 instructions more), from two pipelined commands on it saves.
SPLIT_MIN_BYTES = 128
# The one-command fast path takes commands of up to nine arguments (2 × 9 + 2 tokens):
# never more than the ten Redis allows before AUTH.
SHORT_MAX_TOKENS = 20
# The longest argument count the split fast path reads (MSET of 500 pairs); more goes
# through the general parser.
SPLIT_MAX_COUNT = 1024
# b"*1" … b"*1024" → count, as the split path sees a count line (without its CRLF).
_SPLIT_COUNTS = {b"*%d" % n: n for n in range(1, SPLIT_MAX_COUNT + 1)}


class _Headers(dict):
    """Length → the bulk header b"$<length>" a well-formed argument of that length has.

    Lengths under 1024 are looked up; others are formatted (and not kept, so the table
    cannot grow).
    """

    def __missing__(self, n: int) -> bytes:
        return b"$%d" % n


_HEADERS_OF = _Headers({n: b"$%d" % n for n in range(1024)})

_STAR = 42  # ord("*")
_DOLLAR = 36  # ord("$")


def strict_int(s: bytes) -> int | None:
    """Parse a decimal integer exactly as Redis's string2ll does, or return None.

    Unlike int(), it rejects spaces, '+', '_' and leading zeros, so "$ 5" or "$05" are
    protocol errors here as they are in Redis.
    """
    if s.isdigit():
        if s[0] == 48 and len(s) > 1:  # leading zero
            return None
        n = int(s)
    elif s[:1] == b"-" and s[1:].isdigit() and s[1] != 48:
        n = int(s)
    else:
        return None
    if -(2**63) <= n < 2**63:
        return n
    return None


class RespParser:
    """One connection's parser; the server uses next_command, a client next_reply."""

    def __init__(
        self,
        *,
        max_bulk: int = MAX_BULK,
        max_multibulk: int = MAX_MULTIBULK,
        max_inline: int = MAX_INLINE,
        max_query: int = MAX_QUERY,
    ) -> None:
        self.max_bulk = max_bulk
        self.max_multibulk = max_multibulk
        self.max_inline = max_inline
        self.max_query = max_query
        # Set False by the server while a password is required and not yet given.
        self.authenticated = True
        self._replies = ReplyParser(max_bulk)
        self._buf = b""
        self._pos = 0
        self._parked: list[bytes] = []  # reads waiting until _need bytes are there
        self._parked_len = 0
        self._need = 0  # unread bytes needed before parsing can make progress
        self._args: list[bytes] | None = None  # a half-read multibulk command
        self._count = 0  # how many arguments the half-read command announced
        self._args_size = 0  # bytes held in _args or a cut reply (for the query buffer limit)
        self._ready: list[list[bytes]] = []  # commands the split fast path found, last first
        self._unsplit = False  # bytes arrived since the split fast path last ran
        # The split fast path never meets a bound below its own sizes (tests set small ones).
        self._splittable = max_bulk >= SPLIT_MAX_BYTES and max_multibulk >= SPLIT_MAX_COUNT
        self._shortable = max_bulk >= SPLIT_MIN_BYTES and max_multibulk >= SHORT_MAX_TOKENS // 2

    def feed(self, data: bytes) -> None:
        """Append bytes from the peer; call next_command/next_reply until they say 'no'."""
        if self._pos == len(self._buf) and not self._need:
            # Everything read before was parsed (the usual read; parked reads always
            # come with a need): the new bytes are the buffer.
            self._buf = data if data.__class__ is bytes else bytes(data)
            self._pos = 0
            self._unsplit = True
            return
        if not data:
            return
        self._unsplit = True
        unread = len(self._buf) - self._pos
        if self._parked or unread + len(data) < self._need:
            self._parked.append(bytes(data))
            self._parked_len += len(data)
            if unread + self._parked_len >= self._need:
                self._buf = b"".join([self._buf[self._pos :], *self._parked])
                self._pos = 0
                self._parked.clear()
                self._parked_len = 0
        elif unread == 0:
            self._buf = data if data.__class__ is bytes else bytes(data)
            self._pos = 0
        else:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes held for incomplete input (unread buffer, parked reads, partial args)."""
        return len(self._buf) - self._pos + self._parked_len + self._args_size

    def _incomplete(self, need: int = 0) -> None:
        self._need = need
        if self.buffered > self.max_query:
            # Redis logs "closing client that reached max query buffer length" and
            # closes without a reply.
            raise ProtocolError("Protocol error: query buffer limit reached", reply=False)

    def next_command(self) -> list[bytes] | None:
        """Return the next complete request as a list of arguments, or None for 'need more'.

        Raises ProtocolError with Redis's text; the connection must then be closed.
        """
        ready = self._ready
        if ready:
            return ready.pop()
        if self._args is None:
            buf = self._buf
            pos = self._pos
            left = len(buf) - pos
            if not left:
                # All read: the call that ends each read's loop (one per request without
                # pipelining). Answering here skips the general parser's call and setup,
                # which would answer the same: ~680 of 14,560 instructions per GET read.
                self._need = 0
                return None
            if left > SPLIT_MIN_BYTES:
                if self._unsplit and self._split_commands():
                    return self._ready.pop()
            elif self._shortable:
                # A read holding one short command (no pipelining): one `split` at every
                # CRLF makes all its tokens in C, and the command is taken only if it is
                # exactly `*c (CRLF $n CRLF arg)×c CRLF` with every n its argument's
                # length (as `_split_commands` checks, and so read as the general parser
                # would), and nothing follows. Anything else (a cut command, two
                # commands, inline, an error to report) falls through to the general
                # parser, which starts over. One, two and three arguments are spelled out.
                # Callgrind, feed + next_command until None, one command per read: SET
                # k v 15.1k -> 10.3k instructions, GET 12.2k -> 9.2k, PING 9.3k -> 8.0k
                # against a slice and a table lookup per argument header before.
                tokens = (buf[pos:] if pos else buf).split(b"\r\n")
                n = len(tokens)
                heads = _HEADERS_OF
                if n == 8:
                    count, h1, a1, h2, a2, h3, a3, rest = tokens
                    if (
                        count == b"*3"
                        and h1 == heads[len(a1)]
                        and h2 == heads[len(a2)]
                        and h3 == heads[len(a3)]
                        and not rest
                    ):
                        self._pos = len(buf)
                        return [a1, a2, a3]
                elif n == 6:
                    count, h1, a1, h2, a2, rest = tokens
                    if (
                        count == b"*2"
                        and h1 == heads[len(a1)]
                        and h2 == heads[len(a2)]
                        and not rest
                    ):
                        self._pos = len(buf)
                        return [a1, a2]
                elif n == 4:
                    count, h1, a1, rest = tokens
                    if count == b"*1" and h1 == heads[len(a1)] and not rest:
                        self._pos = len(buf)
                        return [a1]
                elif n <= SHORT_MAX_TOKENS and _SPLIT_COUNTS.get(tokens[0]) == n // 2 - 1:
                    args = tokens[2::2]
                    # [h1, …, hc, rest]: every header right, and nothing after the last CRLF
                    if tokens[1::2] == [*map(heads.__getitem__, map(len, args)), b""]:
                        self._pos = len(buf)
                        return args
        return self._next_command_general()

    def _split_commands(self) -> bool:
        """The pipeline fast path: every whole, well-formed multibulk at the head of the
        buffer, found with one `bytes.split(b"\\r\\n")`, into `_ready`. False if none.

        A well-formed command is exactly `*c CRLF ($n CRLF arg CRLF)×c` with each `n` the
        length of its argument, and `split` cuts it into exactly those tokens: one C call
        makes every argument (and header) of the read, where the general parser pays a
        slice plus a table lookup per header and a slice per argument, each from Python.
        Each header token must equal the header of the argument token after it; the
        first command that does not match token for token (an argument holding CRLF, a
        command cut by the read, inline, a count of 0 or past SPLIT_MAX_COUNT, anything
        malformed) ends the walk, and the general parser carries on from there with its
        own bounds and errors. A command that matches is byte for byte one the general
        parser reads the same way (test_resp_properties.py checks both agree on arbitrary
        splits). It runs at most once per read (`_unsplit`), so bytes it refuses are
        never split twice.

        Measured (callgrind, PYTHONHASHSEED=0, 16 pipelined `SET key:__rand_int__ xxx`
        per read as redis-benchmark -P 16 sends them): parsing 13,010 → 8,536
        instructions per command (GET: 7,264); a whole `data_received` per command,
        with kvcache behind it, SET 24,983 → 20,607, GET 18,418 → 16,100.
        """
        self._unsplit = False
        pos = self._pos
        buf = self._buf
        if (
            not self.authenticated  # the small limits before AUTH: the general parser
            or not self._splittable
            or len(buf) - pos > SPLIT_MAX_BYTES
            or buf[pos] != _STAR
        ):
            return False
        tokens = (buf[pos:] if pos else buf).split(b"\r\n")
        last = len(tokens) - 1  # tokens[last] is not followed by CRLF: not whole yet
        counts = _SPLIT_COUNTS
        heads = _HEADERS_OF
        found = []
        append = found.append
        i = 0
        while i < last:
            count = counts.get(tokens[i])
            if count is None:
                break
            end = i + 2 * count  # the index of the command's last argument
            if end >= last:
                break
            # GET k and SET k v spelled out: unpacking them costs ~1,000 instructions per
            # command less than the general loop below.
            if count == 3:
                h1, a1, h2, a2, h3, a3 = tokens[i + 1 : end + 1]
                if h1 != heads[len(a1)] or h2 != heads[len(a2)] or h3 != heads[len(a3)]:
                    break
                append([a1, a2, a3])
            elif count == 2:
                h1, a1, h2, a2 = tokens[i + 1 : end + 1]
                if h1 != heads[len(a1)] or h2 != heads[len(a2)]:
                    break
                append([a1, a2])
            else:
                args = tokens[i + 2 : end + 1 : 2]
                j = i + 1
                for arg in args:
                    if tokens[j] != heads[len(arg)]:
                        break
                    j += 2
                else:
                    append(args)
                    i = end + 1
                    continue
                break
            i = end + 1
        if not found:
            return False
        if i == last:
            self._pos = len(buf) - len(tokens[last])
        else:
            self._pos = pos + sum(map(len, tokens[:i])) + 2 * i
        found.reverse()  # next_command pops from the end
        self._ready = found
        return True

    def _next_command_general(self) -> list[bytes] | None:
        """next_command for any input: cut commands, big arguments, inline, errors."""
        while True:
            buf = self._buf
            pos = self._pos
            end = len(buf)
            args = self._args
            if args is None:
                if pos >= end:
                    self._need = 0
                    return None
                if buf[pos] != _STAR:
                    line_args = self._inline(buf, pos, end)
                    if line_args is None:
                        return None
                    if line_args:
                        return line_args
                    continue  # empty line: Redis ignores it
                count = _SHORT_COUNTS.get(buf[pos : pos + 4])  # "*1\r\n" … "*9\r\n"
                if count is not None:
                    pos += 4
                else:
                    count, pos = self._multibulk_count(buf, pos, end)
                    if count is None:
                        return None
                    if count <= 0:  # "*0" and "*-1" are silently skipped, as in Redis
                        self._pos = pos
                        continue
                args = []
                self._count = count
                resumed = False
            else:
                resumed = True
            start = pos
            max_bulk = self.max_bulk if self.authenticated else MAX_UNAUTH_BULK
            find = buf.find
            append = args.append
            need = 0
            # The hot loop, once per argument. Most arguments are shorter than 100 bytes,
            # so their "$n\r\n" header is looked up whole in a table; longer ones cost a
            # find, a slice and an int().
            for _ in range(self._count - len(args)):
                n = _SHORT_HEADERS.get(buf[pos : pos + 4])
                if n is not None:
                    nl = pos + 2
                else:
                    n = _SHORT_HEADERS.get(buf[pos : pos + 5])
                    if n is not None:
                        nl = pos + 3
                    else:
                        nl = find(b"\r\n", pos)
                        if nl < 0:
                            if end - pos > self.max_inline:
                                raise ProtocolError("Protocol error: too big bulk count string")
                            break
                        if buf[pos] != _DOLLAR:
                            got = chr(buf[pos]) if buf[pos] not in (10, 13) else " "
                            raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
                        s = buf[pos + 1 : nl]
                        # Plain digits, no leading zero (Redis's string2ll, and ll >= 0).
                        n = int(s) if s.isdigit() and (s[0] != 48 or len(s) == 1) else -1
                if n < 0 or n > max_bulk:
                    raise self._bulk_length_error(n)
                stop = nl + 2 + n
                if stop + 2 > end:
                    need = stop + 2 - pos
                    break
                # Like Redis, the two bytes after the data are skipped, not checked.
                append(buf[nl + 2 : stop])
                pos = stop + 2
            self._pos = pos
            if len(args) < self._count:
                self._args = args
                # Approximately what the parsed arguments hold (their headers included).
                self._args_size += pos - start
                self._incomplete(need)
                return None
            if resumed:
                self._args = None
                self._args_size = 0
                self._need = 0
            return args

    def _multibulk_count(self, buf: bytes, pos: int, end: int) -> tuple[int | None, int]:
        """The count of "*<count>\\r\\n" at pos and where its line ends; (None, pos) if cut."""
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            if end - pos > self.max_inline:
                raise ProtocolError("Protocol error: too big mbulk count string")
            self._incomplete()
            return None, pos
        count = strict_int(buf[pos + 1 : nl])
        if count is None or count > self.max_multibulk:
            raise ProtocolError("Protocol error: invalid multibulk length")
        if count > MAX_UNAUTH_MULTIBULK and not self.authenticated:
            raise ProtocolError("Protocol error: unauthenticated multibulk length")
        return count, nl + 2

    def _bulk_length_error(self, n: int) -> ProtocolError:
        if n < 0 or n > self.max_bulk:
            return ProtocolError("Protocol error: invalid bulk length")
        return ProtocolError("Protocol error: unauthenticated bulk length")

    def _inline(self, buf: bytes, pos: int, end: int) -> list[bytes] | None:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if end - pos > self.max_inline:
                raise ProtocolError("Protocol error: too big inline request")
            self._incomplete()
            return None
        stop = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
        self._pos = nl + 1
        try:
            return split_inline(buf[pos:stop])
        except UnbalancedQuotes:
            raise ProtocolError("Protocol error: unbalanced quotes in request") from None

    def next_reply(self) -> object:
        """Return the next complete reply value, or INCOMPLETE.

        Raises ProtocolError if the bytes are not RESP; the connection is then unusable.
        """
        pos = self._pos
        if pos >= len(self._buf):
            self._need = 0
            return INCOMPLETE
        value, new_pos, need = self._replies.parse(self._buf, pos)
        # Even a cut reply made progress: its finished elements are on the parser's stack.
        self._pos = new_pos
        if value is INCOMPLETE:
            self._args_size += new_pos - pos
            self._incomplete(need)
            return INCOMPLETE
        self._args_size = 0
        self._need = 0
        return value

    @property
    def attributes(self) -> dict | None:
        """RESP3 attributes (`|`) that came with the last reply, if any."""
        return self._replies.attributes
