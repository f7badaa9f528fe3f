"""How the launcher starts a component: hand it its sockets, tie its life to ours, exec it.

`python -m minisys.child MODULE ARGS…` runs inside the new process, between the launcher's
fork and the component's real work:

1. **Sockets**: the launcher bound the component's listening sockets and passed them as
   file descriptors listed in `MINISYS_FDS` ("7,9"). We move them to 3, 4, … and set
   `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID` — the systemd convention that
   `minisys.server.inherited_socket` reads. This renumbering must happen in the child:
   only the child knows its own pid for `LISTEN_PID`.
2. **No orphans**: on Linux, `prctl(PR_SET_PDEATHSIG, SIGTERM)` asks the kernel to send us
   SIGTERM when the launcher dies, even by `kill -9`. Elsewhere a small thread watches our
   parent pid and does the same.
3. Then it runs MODULE exactly as `python -m MODULE ARGS…` would, in this same process.

Simpler than the real thing: systemd does all of this (and cgroups, so even grandchildren
are cleaned up) in C, before exec; here it is twenty lines of Python after exec.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import runpy
import signal
import sys
import threading
import time

from minisys.server import SD_LISTEN_FDS_START

PR_SET_PDEATHSIG = 1
# Temporary descriptors go above this so renumbering never overwrites a source fd.
SCRATCH_FD_BASE = 100
# How often the fallback watcher checks whether the launcher is still our parent.
PARENT_POLL_SECONDS = 0.5


def adopt_listening_fds() -> None:
    fds = [int(fd) for fd in os.environ.pop("MINISYS_FDS", "").split(",") if fd]
    if not fds:
        return
    scratch = [fcntl.fcntl(fd, fcntl.F_DUPFD, SCRATCH_FD_BASE) for fd in fds]
    for fd in fds:
        os.close(fd)
    for i, fd in enumerate(scratch):
        os.dup2(fd, SD_LISTEN_FDS_START + i)
        os.close(fd)
    os.environ["LISTEN_FDS"] = str(len(fds))
    os.environ["LISTEN_PID"] = str(os.getpid())


def die_with_parent() -> None:
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m minisys.child MODULE [ARGS…]")
    module, args = sys.argv[1], sys.argv[2:]
    die_with_parent()
    adopt_listening_fds()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
