"""`python -m minisys`: the front door. Until the launcher lands, it says what is available."""

from __future__ import annotations

import sys

AVAILABLE = """\
minisys — every layer of the classic backend stack, from scratch, in plain asyncio Python.

The launcher (`python -m minisys up`) is not built yet. Each layer runs alone:
  python -m kvcache   --port 6380                    # Redis-compatible cache (RESP)
  python -m minidb    --port 6381 --data-dir DIR     # Bitcask-style database (RESP)
  python -m mq        --port 11301 --data-dir DIR    # beanstalkd-compatible job queue
  python -m appserver --port 8091                    # the shop (HTTP/JSON)
  python -m gateway   --port 8081                    # API gateway (HTTP)
  python -m lb        --port 8080 --backend 127.0.0.1:8081   # L4 load balancer
See README.md.
"""


def main(argv: list[str] | None = None) -> int:
    sys.stdout.write(AVAILABLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
