"""gateway — the HTTP API gateway: the stack's single front door for API calls.

Place on the journey: the lb hands the gateway a TCP connection (maybe prefixed by a PROXY
v1 line naming the real client); the gateway parses HTTP/1.1 with the shared engine in
`minisys/http/`, decides who is calling and whether they may, and forwards the request to
an appserver over a pooled keep-alive connection. Everything it refuses, it refuses itself
with an `application/problem+json` body, so the appservers only see vetted traffic.

Read in this order (each file is one idea):

    pipeline.py      the request's path through the gateway, step by step (start here),
                     as one coroutine and as callbacks (the fast path for the usual request)
    trip.py          what the steps share about one request; the gateway's own refusals
    routes.py        route table; path normalisation so `/a/../admin` is checked as /admin
    auth.py          API keys and HS256 JWTs (constant-time compare, `alg` pinned)
    token_bucket.py  exact integer token buckets with a fake-clock-friendly API
    ratelimit.py     consumer / route / client limits, local or shared; the header fields
    store.py         the shared policy's sliding-window counters in kvcache (one pipeline)
    proxy.py         PROXY v1 from trusted lbs, hop-by-hop stripping, X-Forwarded-*, Via
    upstream.py      pools: round robin, health checks, retries, timeouts (and forward_now)
    breaker.py       the circuit breaker's state table
    access_log.py    one line per request (human or JSON)
    admin.py         the read-only admin API and Prometheus metrics
    config.py        TOML → validated config, errors naming the bad key; the demo config
    __main__.py      `python -m gateway`: wiring, SIGHUP reload

README.md has the how-to-run, the formats and how this is simpler than Kong or Envoy.
"""
