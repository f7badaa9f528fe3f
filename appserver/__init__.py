"""appserver: the shop (HTTP/JSON) and its e-mail worker — where the lessons meet.

On the request's journey this is the third layer: the gateway forwards `POST /place-order`
here; we validate it, read through kvcache, commit to minidb atomically, invalidate the
cache, hand an e-mail job to mq, and answer 201. The worker (`python -m appserver.worker`)
picks the job up and "sends" the e-mail into an mbox outbox, exactly once.

A map of the package, in reading order:

    stores.py          the three store interfaces (cache, db, queue) and URL parsing
    memory.py          in-process fakes of all three (tests, `memory://`)
    redis_stores.py    cache and db over RESP (kvcache, minidb, or redis-server)
    beanstalk_queue.py the queue over the beanstalkd protocol (mq, or beanstalkd)
    cache_aside.py     read-through with fill, invalidation, surviving a dead cache
    transactions.py    WATCH / MULTI / EXEC with retry on conflict
    problems.py        RFC 9457 problem errors
    validation.py      untrusted JSON → typed requests, or 400/413/422
    users.py           user profiles (the plain cache-aside example)
    products.py        catalogue and stock
    outbox.py          the transactional outbox: e-mail jobs survive an mq outage
    orders.py          POST /place-order, step by step  ← the heart of it
    shop.py            wiring the services together
    app.py             the HTTP routes (on minisys.http.web)
    seed.py            demo users and products
    __main__.py        `python -m appserver`
    worker/            `python -m appserver.worker`: render, mbox, the reserve loop

README.md in this directory walks through the flow with the keys each step touches.
"""
