"""Header rewriting as a property: whatever the client sends, what crosses is clean."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy import HOP_BY_HOP, client_headers, pick_request_id, upstream_headers
from minisys.http.head import Headers

NAMES = [
    "Host", "Connection", "Keep-Alive", "TE", "Transfer-Encoding", "Upgrade", "Trailer",
    "Proxy-Authorization", "Proxy-Connection", "X-Forwarded-For", "X-Forwarded-Host",
    "X-Request-ID", "X-Consumer-ID", "Via", "Authorization", "X-API-Key", "Content-Length",
    "Accept", "X-Custom", "Cookie", "Forwarded",
]  # fmt: skip
GATEWAY_ADDED = {
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "via", "x-request-id",
    "x-consumer-id",
}  # fmt: skip
field = st.tuples(
    st.sampled_from(NAMES + [n.upper() for n in NAMES]),
    st.sampled_from(["1", "close", "x-custom, cookie", "X-Forwarded-For", "Host", "a b"]),
)


@given(st.lists(field, max_size=12), st.booleans(), st.booleans())
def test_upstream_headers_are_clean(fields, strip, trusted):
    out = upstream_headers(
        Headers(fields), client_ip="192.0.2.1", via="gw", request_id="rid",
        consumer="bob" if strip else None, strip_credentials=strip, trusted_hop=trusted,
    )  # fmt: skip
    names = [n.lower() for n, _ in out]
    named = {
        t.strip().lower()
        for n, v in fields
        if n.lower() == "connection"
        for t in v.split(",")
        if t.strip()
    }
    for name in names:
        assert name not in HOP_BY_HOP
        if name in named and name != "host":
            assert name in GATEWAY_ADDED  # a client's field named in Connection is gone
    for ours in ("x-forwarded-for", "via", "x-request-id", "x-forwarded-proto"):
        assert names.count(ours) == 1
    assert names.count("x-consumer-id") == (1 if strip else 0)
    assert "content-length" not in names and "forwarded" not in names
    if strip:
        assert "authorization" not in names and "x-api-key" not in names
    xff = dict((n.lower(), v) for n, v in out)["x-forwarded-for"]
    assert xff.endswith("192.0.2.1")
    if not trusted:
        assert xff == "192.0.2.1"
    assert dict((n.lower(), v) for n, v in out)["x-request-id"] == "rid"


@given(st.lists(field, max_size=12), st.booleans())
def test_client_headers_are_clean(fields, head):
    out = client_headers(Headers(fields), via="gw", request_id="rid", keep_length=head)
    names = [n.lower() for n, _ in out]
    assert not set(names) & HOP_BY_HOP
    assert names.count("x-request-id") == 1 and names.count("via") == 1
    if not head:
        assert "content-length" not in names


def test_request_ids():
    assert pick_request_id("abc-1.2:3_Z") == "abc-1.2:3_Z"
    for bad in (None, "", "has space", "x" * 129, "semi;colon", "é"):
        minted = pick_request_id(bad)
        assert len(minted) == 32 and int(minted, 16) >= 0
    assert pick_request_id(None) != pick_request_id(None)
