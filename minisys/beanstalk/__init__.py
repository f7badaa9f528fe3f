"""beanstalkd's protocol for every minisys part that speaks it.

    codec.py    sans-I/O, both sides: reply words, Command/Reject/Reply, ReplyParser, encoders
    commands.py sans-I/O, server side: CommandParser (requests -> Commands)
    client.py   BeanstalkClient: asyncio client used by the appserver and the worker

mq's server (`mq/server.py`) uses the same codec and commands.py, so one set of framing
rules serves both ends of the wire.
"""
