"""mq's network shell: bytes in from a socket, the queue in the middle, bytes out.

On the request's journey: the appserver's `put` and the worker's `reserve`/`delete`
arrive here as bytes. `BeanstalkConnection` feeds them to the shared sans-I/O parser
(`minisys.beanstalk.commands`), runs each `Command` against the `Queue` (`queue.py`) and
writes the reply. `MqApp` holds what all connections share: the queue, the journal, the
one timer that calls `queue.tick(now)`, command counters, and drain mode.

Three things make this more than a loop over commands:

* A reserve that has to wait parks the connection: later pipelined commands stay in the
  parser's buffer (bounded; reading pauses past MAX_INPUT_BUFFER) until the queue
  delivers a job, TIMED_OUT or DEADLINE_SOON, then processing resumes in order.
* Group commit: with `--fsync always`, replies that follow a journaled change (a put, a
  delete…) are held until the journal says the change is on disk. All connections' changes
  made in one event-loop turn share one write and one fsync, so more clients means more
  jobs per fsync instead of more fsyncs.
* All replies produced while handling one packet are joined into one write.

Connections are `minisys.direct.DirectConnection`s: raw non-blocking sockets whose reads
are called straight from epoll and whose replies are sent at once, without asyncio's
transport and protocol layers (minisys/direct.py has the measurements).

Simpler than the real thing: beanstalkd multiplexes sockets with epoll in C and keeps a
per-connection state machine for partial reads and writes; we keep a parser and the
unsent rest of a reply, and leave timers and signals to asyncio.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import time
from os import write as _write  # as minisys/direct.py writes (no "y*|i" argument parsing)
from typing import TYPE_CHECKING

from minisys.beanstalk import codec
from minisys.beanstalk.commands import CommandParser
from minisys.direct import DirectConnection, DirectServer
from minisys.logs import get_logger
from minisys.poller import LoopPoller, make_poller
from minisys.server import ServerConfig
from mq import stats
from mq.job import Job
from mq.queue import DEADLINE_SOON, Client, Queue

if TYPE_CHECKING:
    import socket

    from minisys.poller import DirectSelector
    from mq.journal import Journal

# While a connection waits in reserve we stop parsing; its unparsed input may grow to this
# before we stop reading from the socket (a worker pipelining behind a blocking reserve).
MAX_INPUT_BUFFER = 1 << 20

log = get_logger("mq.server")
_DEADLINE_SOON = codec.DEADLINE_SOON
_TIMED_OUT = codec.TIMED_OUT
_Reject = codec.Reject


class MqApp:
    """State shared by every connection of one mq server."""

    def __init__(
        self,
        max_job_size: int = codec.DEFAULT_MAX_JOB_SIZE,
        journal: Journal | None = None,
        queue: Queue | None = None,
    ) -> None:
        self.queue = queue or Queue()
        self.max_job_size = max_job_size
        self.journal = journal
        self.draining = False
        # Every command word counted, even the few `stats` does not show: an unconditional
        # `+= 1` on a pre-filled dict is the cheapest counter there is.
        self.cmd_counts: dict[str, int] = dict.fromkeys(_HANDLERS, 0)
        self.started = time.time()
        self.instance_id = os.urandom(8).hex()
        self.conns: dict[int, BeanstalkConnection] = {}
        # Connections with replies held for the journal, in the order they began to wait:
        # a sync visits these, not every connection.
        self.holding: dict[BeanstalkConnection, None] = {}
        self.server: DirectServer | None = None
        # The tick is an alarm of minisys/poller.py, not an asyncio timer: an armed asyncio
        # timer costs every loop turn ~5k instructions (poller.py), and a worker's TTR
        # check keeps this one armed nearly all the time (120 s ahead for greenstalk).
        self._poller: DirectSelector | LoopPoller | None = None
        self.timer_at = math.inf  # when the tick alarm rings (inf: not set)
        self._pumping = False
        if journal is not None:
            self.queue.on_change = journal.record
            journal.on_durable = self._durable
            journal.caller_writes = True  # see _flush: write_now() at the end of a batch

    def connection(self) -> BeanstalkConnection:
        """Protocol factory: one BeanstalkConnection per accepted socket."""
        return BeanstalkConnection(self)

    def make_server(
        self, config: ServerConfig, name: str = "mq", sock: socket.socket | None = None
    ) -> DirectServer:
        """The listening server; `sock`: a socket already listening (see __main__)."""
        self.server = DirectServer(name, config, self.connection, sock=sock)
        return self.server

    # --- after every batch: hand out deliveries, reschedule the timer -----------------

    def pump(self) -> None:
        """Deliver replies to waiting reserves and re-arm the tick timer.

        Cheap to call when there is nothing to do, which is most of the time (a put with
        no waiter, a reserve that found a job, a delete): connections check the same two
        conditions inline before they call it (`needs_pump`).
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            queue = self.queue
            while queue.deliveries:
                for client, what in queue.take_deliveries():
                    conn = self.conns.get(client.id)
                    if conn is not None:
                        conn.delivered(what)
        finally:
            self._pumping = False
        self._schedule()

    def needs_pump(self) -> bool:
        """A waiting reserve got its answer, or something new comes due before the timer."""
        queue = self.queue
        return bool(queue.deliveries) or queue.timers.soonest_new < self.timer_at

    def _schedule(self, force: bool = False) -> None:
        queue = self.queue
        armed_at = self.timer_at
        if not force and queue.timers.soonest_new >= armed_at:
            return  # nothing new comes due before the timer that is already set
        queue.timers.soonest_new = math.inf
        wake = queue.next_wakeup()
        if wake is None or wake >= armed_at:
            return
        if self._poller is None:
            self._poller = make_poller(asyncio.get_running_loop())
        self.timer_at = wake
        # Wall-clock deadline to loop time; a hair late rather than early.
        when = time.monotonic() + max(0.0, wake - time.time()) + 0.001
        self._poller.set_alarm(self._tick, when)

    def _tick(self) -> None:
        self.timer_at = math.inf
        self.queue.tick(time.time())
        self.pump()
        self._schedule(force=True)

    def _durable(self, seq: int) -> None:
        if self.holding:  # (nobody, after a delete's unsynced write: the usual case)
            for conn in list(self.holding):
                conn.release_held(seq)

    def enter_drain_mode(self) -> None:
        """SIGUSR1: refuse new jobs from now on (beanstalkd never leaves this mode)."""
        self.draining = True

    def stats_yaml(self, now: float) -> bytes:
        server = self.server
        journal = self.journal
        return stats.server_stats(
            self.queue,
            self.cmd_counts,
            now=now,
            started=self.started,
            max_job_size=self.max_job_size,
            connections=len(server.connections) if server else len(self.conns),
            total_connections=server.accepted if server else len(self.conns),
            draining=self.draining,
            instance_id=self.instance_id,
            binlog=journal.stats() if journal is not None else {},
        )


class BeanstalkConnection(DirectConnection):
    """One client connection speaking beanstalkd's protocol."""

    # Set by on_connect, before any byte is read (a refused connection never gets one).
    client: Client

    def __init__(self, app: MqApp) -> None:
        self.app = app
        self.journal = app.journal
        self.counts = app.cmd_counts
        self.parser = CommandParser(app.max_job_size)
        self.waiting = False
        self.held: collections.deque[tuple[int, bytes]] = collections.deque()
        self._out: list[bytes] = []
        self._quit = False
        self._paused_input = False

    # --- lifecycle --------------------------------------------------------------------

    def on_connect(self) -> None:
        self.client = self.app.queue.connect()
        self.app.conns[self.client.id] = self

    def on_close(self, exc: Exception | None) -> None:
        if self.parser.in_body:
            # beanstalkd allocated the job (and its id) when it read the put line.
            self.app.queue.burn_id()
        self.app.conns.pop(self.client.id, None)
        self.app.holding.pop(self, None)
        self.app.queue.disconnect(self.client, time.time())
        self.app.pump()

    def on_eof(self) -> bool | None:
        # A reserve waiting on a half-closed socket is answered TIMED_OUT (as beanstalkd).
        if self.waiting:
            self.app.queue.cancel_wait(self.client)
            self.app.pump()
        self._quit = True
        self._flush()
        return True

    def on_idle(self) -> None:
        # beanstalkd never hangs up on a quiet client, and a worker blocked in `reserve`
        # or busy with a long job is quiet by design: only truly idle connections go.
        if not self.waiting and not self.client.reserved:
            self.close()

    def on_drain(self) -> None:
        if not self.held:
            self.close()

    # --- input ------------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        parser = self.parser
        parser.feed(data)
        if self.waiting:
            if parser.buffered > MAX_INPUT_BUFFER:
                self.pause_reading()
                self._paused_input = True
            return
        try:
            self._process()
            app = self.app
            queue = app.queue
            # app.needs_pump(), inline: it is False after nearly every packet.
            if queue.deliveries or queue.timers.soonest_new < app.timer_at:
                app.pump()
        except Exception:
            # A bug must cost one connection, never the server (beanstalkd's last resort).
            log.exception("mq: internal error; closing connection from %s", self.peer)
            self.write(codec.INTERNAL_ERROR)
            self.close()

    def _process(self) -> None:
        """Run every complete command buffered (until a reserve has to wait); reply once."""
        parser = self.parser
        out = self._out
        counts = self.counts
        now = time.time()
        # The loop's test is the parser's "anything unparsed?", inline (see
        # CommandParser), made after each command: on_data has just fed a packet.
        while not (self.waiting or self._quit):
            cmd = parser.next_command()
            if cmd is None:
                break
            if type(cmd) is _Reject:
                if cmd.burns_id:
                    self.app.queue.burn_id()
                out.append(cmd.reply)
            else:
                name, args, body = cmd
                counts[name] += 1
                reply = _HANDLERS[name](self, args, body, now)
                if reply is not None:
                    out.append(reply)
            if not (parser.pos < len(parser.data) or parser.more):
                break
        journal = self.journal
        if (
            len(out) == 1
            and self._pending is None
            and not (self._closing or self._quit)
            and (
                journal is None
                or (
                    not self.held
                    and (journal.need_seq <= journal.durable_seq or journal.write_now())
                )
            )
        ):
            # The usual end of a packet: one reply, nothing unsent before it, and no
            # journal or nothing the reply must wait for (a reserve; a delete, written by
            # write_now). _flush's last branch inline (a call less per command, ~1.5k
            # instructions per job with the send; with --fsync always, two of a job's
            # three replies come this way).
            data = out.pop()
            try:
                sent = _write(self.fd, data)
            except OSError:
                self.write(data)  # would block, or an error: write() deals with both
            else:
                if sent < len(data):
                    self.keep_unsent(data, sent)
            return
        self._flush()

    def delivered(self, what: Job | str) -> None:
        """The queue answered our waiting reserve; carry on with what is buffered."""
        self.waiting = False
        if type(what) is Job:
            self._out.append(b"RESERVED %d %d\r\n%b\r\n" % (what.id, len(what.body), what.body))
        else:
            self._out.append(_DEADLINE_SOON if what == DEADLINE_SOON else _TIMED_OUT)
        if self._paused_input:
            self._paused_input = False
            self.resume_reading()
        self._process()

    # --- output: group commit ---------------------------------------------------------

    def _flush(self) -> None:
        out = self._out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)  # one write per batch
            out.clear()
            journal = self.app.journal
            if (
                journal is not None
                and (self.held or journal.need_seq > journal.durable_seq)
                and (self.held or not journal.write_now())
            ):
                if not self.held:
                    self.app.holding[self] = None
                    self.busy = True  # set_busy(True), inline: it does only this
                self.held.append((journal.need_seq, data))
                journal.kick()
            else:  # (the usual lone reply never gets here: _process sends it inline)
                self.write(data)
        if self._quit and not self.held:
            self.close()

    def release_held(self, durable: int) -> None:
        held = self.held
        while held and held[0][0] <= durable:
            self.write(held.popleft()[1])
        if not held:
            self.app.holding.pop(self, None)
            self.set_busy(False)
            if self._quit:
                self.close()

    # --- commands ---------------------------------------------------------------------

    def _put(self, args: tuple, body: bytes | None, now: float) -> bytes:
        app = self.app
        if app.draining:
            app.queue.burn_id()
            return codec.DRAINING
        pri, delay, ttr = args
        job = app.queue.put(self.client, pri, delay, ttr, body, now)  # type: ignore[arg-type]
        return b"INSERTED %d\r\n" % job.id

    def _reserve(self, args: tuple, body: bytes | None, now: float) -> bytes | None:
        got = self.app.queue.reserve(self.client, now, args[0] if args else None)
        if type(got) is Job:
            return b"RESERVED %d %d\r\n%b\r\n" % (got.id, len(got.body), got.body)
        if got is None:
            self.waiting = True
            return None
        return _DEADLINE_SOON if got == DEADLINE_SOON else _TIMED_OUT

    def _reserve_job(self, args: tuple, body: bytes | None, now: float) -> bytes:
        job = self.app.queue.reserve_job(self.client, args[0], now)
        if job is None:
            return codec.NOT_FOUND
        return codec.encode_data_reply(b"RESERVED", b"%d" % job.id, job.body)

    def _delete(self, args: tuple, body: bytes | None, now: float) -> bytes:
        ok = self.app.queue.delete(self.client, args[0])
        return codec.DELETED if ok else codec.NOT_FOUND

    def _release(self, args: tuple, body: bytes | None, now: float) -> bytes:
        ok = self.app.queue.release(self.client, args[0], args[1], args[2], now)
        return codec.RELEASED if ok else codec.NOT_FOUND

    def _bury(self, args: tuple, body: bytes | None, now: float) -> bytes:
        ok = self.app.queue.bury(self.client, args[0], args[1])
        return codec.BURIED if ok else codec.NOT_FOUND

    def _touch(self, args: tuple, body: bytes | None, now: float) -> bytes:
        ok = self.app.queue.touch(self.client, args[0], now)
        return codec.TOUCHED if ok else codec.NOT_FOUND

    def _kick(self, args: tuple, body: bytes | None, now: float) -> bytes:
        return b"KICKED %d\r\n" % self.app.queue.kick(self.client, args[0], now)

    def _kick_job(self, args: tuple, body: bytes | None, now: float) -> bytes:
        ok = self.app.queue.kick_job(args[0], now)
        return codec.KICKED if ok else codec.NOT_FOUND

    def _use(self, args: tuple, body: bytes | None, now: float) -> bytes:
        self.app.queue.use(self.client, args[0])
        return b"USING %s\r\n" % args[0].encode()

    def _watch(self, args: tuple, body: bytes | None, now: float) -> bytes:
        return b"WATCHING %d\r\n" % self.app.queue.watch(self.client, args[0])

    def _ignore(self, args: tuple, body: bytes | None, now: float) -> bytes:
        count = self.app.queue.ignore(self.client, args[0])
        return codec.NOT_IGNORED if count is None else b"WATCHING %d\r\n" % count

    def _found(self, job: Job | None) -> bytes:
        if job is None:
            return codec.NOT_FOUND
        return codec.encode_data_reply(b"FOUND", b"%d" % job.id, job.body)

    def _peek(self, args: tuple, body: bytes | None, now: float) -> bytes:
        return self._found(self.app.queue.peek(args[0]))

    def _peek_ready(self, args: tuple, body: bytes | None, now: float) -> bytes:
        return self._found(self.app.queue.peek_ready(self.client))

    def _peek_delayed(self, args: tuple, body: bytes | None, now: float) -> bytes:
        return self._found(self.app.queue.peek_delayed(self.client))

    def _peek_buried(self, args: tuple, body: bytes | None, now: float) -> bytes:
        return self._found(self.app.queue.peek_buried(self.client))

    def _stats_job(self, args: tuple, body: bytes | None, now: float) -> bytes:
        job = self.app.queue.peek(args[0])
        if job is None:
            return codec.NOT_FOUND
        journal = self.app.journal
        index = journal.generation if journal is not None else 0
        return codec.encode_data_reply(b"OK", b"", stats.job_stats(job, now, index))

    def _stats_tube(self, args: tuple, body: bytes | None, now: float) -> bytes:
        tube = self.app.queue.tubes.get(args[0])
        if tube is None:
            return codec.NOT_FOUND
        return codec.encode_data_reply(b"OK", b"", stats.tube_stats(tube, now))

    def _stats(self, args: tuple, body: bytes | None, now: float) -> bytes:
        return codec.encode_data_reply(b"OK", b"", self.app.stats_yaml(now))

    def _list_tubes(self, args: tuple, body: bytes | None, now: float) -> bytes:
        names = list(self.app.queue.tubes)
        return codec.encode_data_reply(b"OK", b"", stats.yaml_list(names))

    def _list_tube_used(self, args: tuple, body: bytes | None, now: float) -> bytes:
        return b"USING %s\r\n" % self.client.use.encode()

    def _list_tubes_watched(self, args: tuple, body: bytes | None, now: float) -> bytes:
        names = list(self.client.watching)
        return codec.encode_data_reply(b"OK", b"", stats.yaml_list(names))

    def _pause_tube(self, args: tuple, body: bytes | None, now: float) -> bytes:
        ok = self.app.queue.pause_tube(args[0], args[1], now)
        return codec.PAUSED if ok else codec.NOT_FOUND

    def _quit_cmd(self, args: tuple, body: bytes | None, now: float) -> None:
        self._quit = True
        return None


_HANDLERS = {
    "put": BeanstalkConnection._put,
    "reserve": BeanstalkConnection._reserve,
    "reserve-with-timeout": BeanstalkConnection._reserve,
    "reserve-job": BeanstalkConnection._reserve_job,
    "delete": BeanstalkConnection._delete,
    "release": BeanstalkConnection._release,
    "bury": BeanstalkConnection._bury,
    "touch": BeanstalkConnection._touch,
    "kick": BeanstalkConnection._kick,
    "kick-job": BeanstalkConnection._kick_job,
    "use": BeanstalkConnection._use,
    "watch": BeanstalkConnection._watch,
    "ignore": BeanstalkConnection._ignore,
    "peek": BeanstalkConnection._peek,
    "peek-ready": BeanstalkConnection._peek_ready,
    "peek-delayed": BeanstalkConnection._peek_delayed,
    "peek-buried": BeanstalkConnection._peek_buried,
    "stats-job": BeanstalkConnection._stats_job,
    "stats-tube": BeanstalkConnection._stats_tube,
    "stats": BeanstalkConnection._stats,
    "list-tubes": BeanstalkConnection._list_tubes,
    "list-tube-used": BeanstalkConnection._list_tube_used,
    "list-tubes-watched": BeanstalkConnection._list_tubes_watched,
    "pause-tube": BeanstalkConnection._pause_tube,
    "quit": BeanstalkConnection._quit_cmd,
}
