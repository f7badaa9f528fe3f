"""The e-mail worker: mq's `emails` tube in, an mbox outbox out, each order's mail once.

    render.py     job JSON → an RFC 5322 message (Message-ID from the order id)
    mbox.py       append to the mbox, skipping a Message-ID already there
    runner.py     the loop: reserve → send → delete; release with back-off; bury; touch
    source.py     the beanstalkd connection the loop uses (mq or a real beanstalkd)
    __main__.py   `python -m appserver.worker --queue … --outbox …`

Read `runner.py` first: its table is the whole behaviour.
"""
