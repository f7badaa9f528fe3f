"""`python -m mq`: start the queue (see cli.py for the flags, README.md for the rest).

On the request's journey: this is how the launcher (and a learner, or a client library's
test harness that expects beanstalkd) starts mq. It replays the journal, listens, prints
`READY mq 127.0.0.1:11301`, and serves until SIGTERM; SIGUSR1 enters drain mode (new puts
get DRAINING), as in beanstalkd.

Start-up is kept lean (only what serving needs is imported) because harnesses connect
within a fraction of a second of starting the process.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from minisys.logs import get_logger
from minisys.server import Server, run, serve
from mq.cli import MqOptions, parse_args
from mq.server import MqApp

log = get_logger("mq")


class UnixServer(Server):
    """A Server listening on a UNIX socket (`-l unix:PATH`), as beanstalkd can."""

    def __init__(self, path: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.path = path

    async def start(self) -> None:
        import os

        if os.path.exists(self.path):
            os.unlink(self.path)  # beanstalkd replaces a stale socket file too
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._make_protocol, path=self.path)
        print(f"READY {self.name} unix:{self.path}", flush=True)


async def main(opts: MqOptions) -> None:
    journal = None
    app = MqApp(max_job_size=opts.max_job_size)
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
    if opts.unix_path:
        server = UnixServer(opts.unix_path, "mq", opts.server, app.connection)
        app.server = server
    else:
        server = app.make_server(opts.server)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, app.enter_drain_mode)

    async def on_stop() -> None:
        if journal is not None:
            await journal.close()

    await serve(server, on_stop=on_stop)


def entry() -> int:
    opts = parse_args(sys.argv[1:])
    if opts is None:
        return 0
    return run(lambda: main(opts), component="mq", config=opts.server)


if __name__ == "__main__":
    sys.exit(entry())
