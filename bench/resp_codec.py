"""Benchmark the RESP codec against redis-py's pure-Python parser and command packer.

    python bench/resp_codec.py [--commands 100000] [--rounds 5]

Same inputs for both sides, alternating in one run (so machine noise hits both alike):

- parse: one byte stream of pipelined commands (redis-benchmark's mix: SET with 3-byte
  values, GET, INCR, LPUSH-like 5-arg commands, and a few 1 KiB values), delivered in
  16 KiB reads as a socket would deliver them. Ours: `RespParser.feed` + `next_command`.
  Peer: redis-py 8's `_RESP2Parser.read_response` (the parser redis-py uses when hiredis
  is absent) reading the same stream from a fake socket.
- parse_replies: a stream of typical replies (+OK, bulks, integers, nulls, small arrays).
  Ours: `next_reply`; peer: the same `_RESP2Parser`.
- encode: packing each command into RESP bytes. Ours: `encode_command`; peer: redis-py's
  `PythonRespSerializer.pack` (what `Connection.pack_command` calls).

Rates are per CPU-second of this process (time.process_time), best of the rounds: the
machine is shared, and wall-clock rates mostly measured the neighbours. One line per figure:

    RESULT resp_parse: ours=… peer=… ratio=… target=1.0
    RESULT resp_parse_replies: ours=… peer=… ratio=… target=1.0
    RESULT resp_encode: ours=… peer=… ratio=… target=1.0
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minisys.resp import INCOMPLETE, RespParser, encode_command, encode_reply
from minisys.resp.values import SimpleString

# What a socket read typically hands a parser (redis-py reads 64 KiB, Redis 16 KiB).
READ_SIZE = 16 * 1024


def make_commands(n: int, seed: int = 7) -> list[tuple[bytes, ...]]:
    rng = random.Random(seed)
    cmds: list[tuple[bytes, ...]] = []
    for i in range(n):
        key = b"key:%012d" % rng.randrange(100_000)
        r = rng.random()
        if r < 0.4:
            cmds.append((b"SET", key, b"xxx"))
        elif r < 0.8:
            cmds.append((b"GET", key))
        elif r < 0.9:
            cmds.append((b"INCR", b"counter:%d" % (i % 100)))
        elif r < 0.98:
            cmds.append((b"LPUSH", b"mylist", b"a", b"b", b"c"))
        else:
            cmds.append((b"SET", key, b"v" * 1024))
    return cmds


def make_replies(n: int, seed: int = 7) -> list[object]:
    rng = random.Random(seed)
    choices = [
        SimpleString("OK"),
        b"xxx",
        None,
        42,
        [b"a", b"b", b"c"],
        b"v" * 1024,
    ]
    weights = [40, 35, 5, 10, 8, 2]
    return rng.choices(choices, weights, k=n)


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]


def ours_parse(pieces: list[bytes], expected: int) -> float:
    start = time.process_time()
    parser = RespParser()
    count = 0
    for piece in pieces:
        parser.feed(piece)
        while parser.next_command() is not None:
            count += 1
    elapsed = time.process_time() - start
    assert count == expected, (count, expected)
    return expected / elapsed


def ours_parse_replies(pieces: list[bytes], expected: int) -> float:
    start = time.process_time()
    parser = RespParser()
    count = 0
    for piece in pieces:
        parser.feed(piece)
        while parser.next_reply() is not INCOMPLETE:
            count += 1
    elapsed = time.process_time() - start
    assert count == expected, (count, expected)
    return expected / elapsed


class FakeSocket:
    """Just enough of a socket for redis-py's SocketBuffer: recv hands out the reads."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = iter(pieces)

    def recv(self, size: int) -> bytes:
        return next(self.pieces, b"")

    def settimeout(self, timeout: object) -> None:
        pass


def peer_parse(pieces: list[bytes], expected: int) -> float:
    from redis._parsers import Encoder, _RESP2Parser
    from redis._parsers.socket import SocketBuffer

    parser = _RESP2Parser(socket_read_size=READ_SIZE)
    parser._buffer = SocketBuffer(FakeSocket(pieces), READ_SIZE, None)
    parser.encoder = Encoder("utf-8", "strict", False)
    start = time.process_time()
    for _ in range(expected):
        parser.read_response()
    elapsed = time.process_time() - start
    return expected / elapsed


def ours_encode(cmds: list[tuple[bytes, ...]]) -> float:
    start = time.process_time()
    for cmd in cmds:
        encode_command(*cmd)
    return len(cmds) / (time.process_time() - start)


def peer_encode(cmds: list[tuple[bytes, ...]]) -> float:
    from redis._parsers import Encoder
    from redis.connection import PythonRespSerializer

    pack = PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode).pack
    start = time.process_time()
    for cmd in cmds:
        pack(*cmd)
    return len(cmds) / (time.process_time() - start)


def result(name: str, ours: float, peer: float | None) -> None:
    if peer is None:
        print(f"RESULT {name}: ours={ours:.0f} peer=n/a ratio=n/a target=1.0")
    else:
        print(f"RESULT {name}: ours={ours:.0f} peer={peer:.0f} ratio={ours / peer:.2f} target=1.0")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    try:
        import redis  # noqa: F401

        have_peer = True
    except ImportError:
        print("redis-py not installed: measuring ours only (pip install redis)")
        have_peer = False

    cmds = make_commands(args.commands)
    stream = chunks(b"".join(encode_command(*c) for c in cmds))
    replies = make_replies(args.commands)
    reply_stream = chunks(b"".join(encode_reply(r, 2) for r in replies))
    print(
        f"{len(cmds)} commands ({sum(map(len, stream)) / 1e6:.1f} MB), "
        f"{len(replies)} replies, {args.rounds} rounds, best round reported"
    )

    best: dict[str, list[float]] = {k: [0.0, 0.0] for k in ("parse", "replies", "encode")}
    for round_no in range(args.rounds):
        order = (0, 1) if round_no % 2 == 0 else (1, 0)
        for side in order:
            if side == 0:
                runs = (
                    ("parse", ours_parse(stream, len(cmds))),
                    ("replies", ours_parse_replies(reply_stream, len(replies))),
                    ("encode", ours_encode(cmds)),
                )
            elif have_peer:
                runs = (
                    ("parse", peer_parse(stream, len(cmds))),
                    ("replies", peer_parse(reply_stream, len(replies))),
                    ("encode", peer_encode(cmds)),
                )
            else:
                continue
            for name, rate in runs:
                best[name][side] = max(best[name][side], rate)
        print(
            f"round {round_no + 1}: "
            + "  ".join(f"{k} ours={v[0]:.0f}/s peer={v[1]:.0f}/s" for k, v in best.items())
        )

    for key, name in (
        ("parse", "resp_parse"),
        ("replies", "resp_parse_replies"),
        ("encode", "resp_encode"),
    ):
        ours, peer = best[key]
        result(name, ours, peer if have_peer else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
