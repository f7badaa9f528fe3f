"""`python -m mq`: start the queue (see cli.py for the flags, README.md for the rest).

On the request's journey: this is how the launcher (and a learner, or a client library's
test harness that expects beanstalkd) starts mq. It listens, replays the journal, prints
`READY mq 127.0.0.1:11301`, and serves until SIGTERM; SIGUSR1 enters drain mode (new puts
get DRAINING), as in beanstalkd.

Start-up order, because harnesses connect within a fraction of a second of starting the
process: parse the flags, bind and listen, and only then import the queue and replay the
journal. A client that connects meanwhile is accepted by the kernel and waits in the
listen backlog; nothing is read from it until the replay is over and the READY line is
printed, so no command ever sees a half-replayed queue. beanstalkd does the same (it makes
its server socket before it reads its binlog).
"""

from __future__ import annotations

import os
import socket
import sys

# Nothing here imports asyncio: see listen_now.
from minisys.serverconfig import LISTEN_BACKLOG
from mq.cli import MqOptions, parse_args


def listen_now(opts: MqOptions) -> socket.socket | None:
    """Bind and listen before the slow part of start-up (None: the launcher passed one).

    Called before asyncio and the queue are imported, so a harness that connects right
    after starting us finds a listening socket (about 20 ms sooner than binding after
    `import asyncio`, of ~100 ms for the whole start here).
    """
    if opts.unix_path:
        if os.path.exists(opts.unix_path):
            os.unlink(opts.unix_path)  # beanstalkd replaces a stale socket file too
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(opts.unix_path)
        sock.listen(LISTEN_BACKLOG)
        return sock
    if os.environ.get("LISTEN_FDS"):
        return None  # an inherited socket: Server.start adopts it (minisys.server)
    host, port = opts.server.host, opts.server.port
    family = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0][0]
    return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)


async def main(opts: MqOptions, sock: socket.socket | None) -> None:
    # Imported only now: clients can already connect while the queue loads.
    import asyncio
    import signal
    import time

    from minisys.logs import get_logger
    from minisys.server import serve
    from mq.server import MqApp

    log = get_logger("mq")

    app = MqApp(max_job_size=opts.max_job_size)
    journal = None
    if opts.data_dir:
        from mq.journal import Journal

        journal = Journal(
            opts.data_dir, opts.fsync, opts.fsync_interval, compact_min=opts.compact_min
        )
        started = time.monotonic()
        replay = journal.open(app.queue, time.time())
        log.info(
            "replayed %d records, %d live jobs in %.3fs",
            replay.records,
            len(replay.jobs),
            time.monotonic() - started,
        )
        app = MqApp(max_job_size=opts.max_job_size, journal=journal, queue=app.queue)
    server = app.make_server(opts.server, sock=sock)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, app.enter_drain_mode)

    async def on_stop() -> None:
        if journal is not None:
            await journal.close()

    await serve(server, on_stop=on_stop)


def entry() -> int:
    opts = parse_args(sys.argv[1:])
    if opts is None:
        return 0
    sock = listen_now(opts)
    # The asyncio half, once the socket listens. Our loop's selector calls each client
    # socket's read callback straight from epoll and returns to asyncio only when it has
    # work (minisys/poller.py, minisys/direct.py).
    import asyncio

    from minisys.poller import ServingLoopPolicy
    from minisys.server import run

    asyncio.set_event_loop_policy(ServingLoopPolicy())
    return run(lambda: main(opts, sock), component="mq", config=opts.server)


if __name__ == "__main__":
    sys.exit(entry())
