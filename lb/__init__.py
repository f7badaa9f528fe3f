"""lb: the L4 TCP load balancer, the first hop of every request (HAProxy `mode tcp`).

    client ──TCP──▶ lb ──TCP (+ PROXY v1 line)──▶ gateway ──HTTP──▶ appserver …

It accepts a TCP connection, picks a healthy backend, connects to it and copies bytes
both ways until both sides are done. It never parses what it carries, so it balances
HTTP, RESP or anything else. A map of the package, in the order a connection meets it:

    listener.py    accept() without a Task or transport; limits, idle sweep and drain
                   from minisys/server.py
    proxy.py       a client's connection: choose, connect (retry elsewhere on failure),
                   queue when every backend is at maxconn, then splice
    connect.py     the non-blocking connect with a timeout (the costly half of accept+connect)
    splice.py      copying bytes both ways on the raw sockets: backpressure, half-close,
                   reset propagation
    backend.py     Backend (address, weight, maxconn, counters) and the Pool that filters
                   the eligible ones: enabled, healthy, not ejected, under maxconn
    algorithms.py  round robin, smooth weighted round robin, least connections, power of
                   two choices, consistent hashing on the client address
    health.py      sans-I/O rise/fall state machine, passive ejection, slow start
    checks.py      active TCP / HTTP probes that feed health.py on a timer
    admin.py       HTTP admin: JSON stats, Prometheus metrics, drain/enable/disable,
                   add/remove backends at runtime (uses minisys/http)
    workers.py     `--workers N`: a master that starts N lb processes on one port
                   (SO_REUSEPORT), replaces dead ones, stops them all on SIGTERM
    fanout.py      the master's admin endpoint: asks every worker, sums, labels
    __main__.py    the command line: `python -m lb --backend … --algorithm …`

Shared code it uses from the kernel: minisys/server.py (the Server that listener.py
extends: limits, idle sweep, drain on SIGTERM), minisys/poller.py (the loop's selector,
which calls spliced sockets' callbacks itself and waits again while asyncio has nothing
to do: the hot path under splice.py), minisys/proxyproto.py (the PROXY v1
line), minisys/metrics.py. Read README.md first, then proxy.py and splice.py.
"""
