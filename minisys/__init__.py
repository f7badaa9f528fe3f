"""minisys: every layer of the classic backend stack, from scratch, in plain asyncio Python.

    client ─▶ lb ─▶ gateway ─▶ appserver ─▶ kvcache / minidb ─▶ mq ─▶ worker

This package is the shared kernel every layer builds on, and the launcher that runs them all.
A map of the kernel, in the order a request meets it:

- `serverconfig.py` the flags every server takes (no asyncio, so a server can bind first)
- `server.py`     bind, accept, connection limits, idle timeouts, graceful drain, READY lines
- `reads.py`      every socket reads into one reused buffer (and why that matters)
- `ticker.py`     periodic work from a sleeping thread (an armed asyncio timer taxes every turn)
- `poller.py`     an epoll selector that calls raw sockets' owners directly (lb, mq, RESP)
- `direct.py`     a server connection on a raw socket instead of a transport (mq, RESP; lb's accept)
- `pipelining.py` a client connection with many requests in flight (RESP and beanstalkd)
- `proxyproto.py` PROXY protocol v1, which the lb prepends so the gateway learns the client
- `http/`         HTTP/1.1: sans-I/O codec, server, pooled client, a small web framework
- `resp/`         Redis's RESP2/RESP3: sans-I/O codec, command engine, server, client
- `beanstalk/`    beanstalkd's protocol: sans-I/O codec and client
- `files.py`      whole writes, data syncs and durable renames (minidb's files, mq's journal)
- `metrics.py`    counters, gauges, histograms in the Prometheus text format
- `logs.py`       human or JSON log lines carrying the request id
- `config.py`     typed settings from defaults, TOML and flags
- `testing.py`    real server processes and deadline-polling for tests
- `__main__.py`   `python -m minisys`: the launcher

The layers (`lb`, `gateway`, `appserver`, `kvcache`, `minidb`, `mq`) import from here and
never from each other: they talk over sockets, exactly as the real products would.
"""

__version__ = "0.1.0"
