"""beanstalkd's protocol for every minisys part that speaks it.

    codec.py    sans-I/O: CommandParser (server side), ReplyParser (client side), encoders
    client.py   BeanstalkClient: asyncio client used by the appserver and the worker

mq's server (`mq/server.py`) uses the same codec, so one set of framing rules serves both
ends of the wire.
"""
