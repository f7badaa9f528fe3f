"""A tiny line protocol served through minisys.server, for the lifecycle tests.

PING        → PONG
SLOW <ms>   → (busy for <ms>) DONE
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from minisys.server import (
    Connection,
    Server,
    add_server_arguments,
    run,
    serve,
    server_config_from_args,
)


class LineConnection(Connection):
    buffer = b""

    def refusal(self) -> bytes:
        return b"ERR max connections reached\n"

    def on_data(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer and not self.busy:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line == b"PING":
                self.write(b"PONG\n")
            elif line.startswith(b"SLOW "):
                self.set_busy(True)
                asyncio.get_running_loop().call_later(int(line[5:]) / 1000, self.finish)
            else:
                self.write(b"ERR unknown\n")

    def finish(self) -> None:
        self.write(b"DONE\n")
        self.set_busy(False)
        if self.buffer:
            self.on_data(b"")


def main() -> int:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser, default_port=0)
    config = server_config_from_args(parser.parse_args())
    server = Server("lines", config, LineConnection)
    return run(lambda: serve(server), component="lines", config=config)


if __name__ == "__main__":
    sys.exit(main())
