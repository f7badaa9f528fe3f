"""Command line of `python -m mq`: minisys's flags and beanstalkd's own.

On the request's journey: the launcher starts mq with `--port 11301 --data-dir DIR`;
scripts and client test suites written for beanstalkd start it with beanstalkd's flags
instead, so both spellings work:

    beanstalkd flag     mq flag                      meaning
    -l ADDR             --host ADDR                  listen address (`-l unix:PATH` too)
    -p PORT             --port PORT                  TCP port (0 = any free port)
    -b DIR              --data-dir DIR               persist jobs in a journal under DIR
    -f MS               --fsync always|everysec|no   -f 0 = always, -f N = every N ms
    -F                  --fsync no                   never fsync (the OS decides)
    -z BYTES            --max-job-size BYTES         largest job body (default 65535)
    -s BYTES            --compact-min BYTES          journal size before compaction
    -V                  --log-level debug            more logging
    -v                                               print the version and exit

Simpler than the real thing: beanstalkd also has -u (drop privileges) and -c/-n (old
compaction switches); mq accepts -u and ignores it with a warning.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from minisys.beanstalk.codec import DEFAULT_MAX_JOB_SIZE
from minisys.serverconfig import ServerConfig, add_server_arguments, server_config_from_args
from mq.records import DEFAULT_COMPACT_MIN

DEFAULT_PORT = 11301
# beanstalkd's -z limit: a job body may not exceed 1 GiB.
MAX_JOB_SIZE_LIMIT = 1 << 30
# beanstalkd -b without -f syncs at most every 50 ms (its default since 1.12).
BEANSTALKD_DEFAULT_FSYNC_MS = 50


@dataclass
class MqOptions:
    server: ServerConfig
    unix_path: str | None
    data_dir: str | None
    fsync: str  # always | interval | no
    fsync_interval: float
    max_job_size: int
    compact_min: int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mq",
        description="A persistent job queue speaking the beanstalkd protocol.",
    )
    add_server_arguments(parser, default_port=DEFAULT_PORT)
    parser.add_argument("--data-dir", "-b", dest="data_dir", help="journal directory")
    parser.add_argument(
        "--fsync", choices=("always", "everysec", "no"), help="when to fsync the journal"
    )
    parser.add_argument("-f", dest="fsync_ms", type=int, help="fsync at most every MS ms")
    parser.add_argument("-F", dest="never_fsync", action="store_true", help="never fsync")
    parser.add_argument(
        "--max-job-size", "-z", dest="max_job_size", type=int, default=DEFAULT_MAX_JOB_SIZE
    )
    parser.add_argument("--compact-min", "-s", dest="compact_min", type=int)
    parser.add_argument("-l", dest="listen", help="listen address, or unix:PATH")
    parser.add_argument("-p", dest="bs_port", type=int, help="TCP port (as beanstalkd)")
    parser.add_argument("-V", dest="verbose", action="count", default=0, help="more logging")
    parser.add_argument("-u", dest="user", help="ignored (beanstalkd drops privileges)")
    parser.add_argument("-v", "--version", action="store_true", help="print version")
    return parser


def parse_args(argv: list[str] | None = None) -> MqOptions | None:
    """Parse the command line; None means "version printed, exit"."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from mq.stats import VERSION

        print(f"mq {VERSION}")
        return None
    if args.bs_port is not None:
        args.port = args.bs_port
    unix_path = None
    if args.listen:
        if args.listen.startswith("unix:"):
            unix_path = args.listen[5:]
        else:
            args.host = args.listen
    if args.verbose:
        args.log_level = "debug"
    if args.user:
        print(f"mq: -u {args.user} ignored: mq does not drop privileges", file=sys.stderr)
    if not 0 < args.max_job_size <= MAX_JOB_SIZE_LIMIT:
        parser.error(f"-z/--max-job-size must be 1..{MAX_JOB_SIZE_LIMIT}")
    fsync, interval = "always", 0.0
    if args.never_fsync or args.fsync == "no":
        fsync = "no"
    elif args.fsync == "everysec":
        fsync, interval = "interval", 1.0
    elif args.fsync_ms is not None and args.fsync_ms > 0:
        fsync, interval = "interval", args.fsync_ms / 1000
    elif args.fsync is None and args.fsync_ms is None and "-b" in (argv or []):
        fsync, interval = "interval", BEANSTALKD_DEFAULT_FSYNC_MS / 1000
    return MqOptions(
        server=server_config_from_args(args),
        unix_path=unix_path,
        data_dir=args.data_dir,
        fsync=fsync,
        fsync_interval=interval,
        max_job_size=args.max_job_size,
        compact_min=args.compact_min or DEFAULT_COMPACT_MIN,
    )
