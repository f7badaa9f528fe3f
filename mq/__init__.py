"""mq: a persistent job queue that speaks beanstalkd's protocol.

On the request's journey: after an order is committed, the appserver puts an email job on
the `emails` tube here; the worker reserves it, sends the email and deletes it. Any
beanstalkd client (greenstalk, pystalk, …) works unchanged, and `beanstalkd` itself can
stand in for mq.

Map of the package (read in this order):

    job.py       a job and its lifecycle table (ready, reserved, delayed, buried)
    tube.py      one tube: ready heap, delayed heap, buried list
    queue.py     the sans-I/O core: every command as a method, time passed in
    records.py   the journal's CRC-checked record format
    replay.py    reading the records back into a queue after a restart
    journal.py   the journal file: group commit, replay, compaction while running
    stats.py     the YAML of stats / stats-tube / stats-job
    server.py    the asyncio shell on minisys.server.Connection
    cli.py       flags: minisys's and beanstalkd's (-l -p -b -f -F -z -s -V)
    __main__.py  `python -m mq`

The wire codec is shared with the clients in `minisys/beanstalk/codec.py`; the server's
request parser is `minisys/beanstalk/commands.py`.
README.md explains the design; PROTOCOL.md is the wire reference with examples.
"""
