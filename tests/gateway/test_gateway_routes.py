"""Route matching, and path tricks that must not reach a route the canonical path wouldn't."""

from __future__ import annotations

import posixpath
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.routes import NoRoute, PathError, Route, RouteTable, encode_path, normalize_path


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/", "/"),
        ("/users/42", "/users/42"),
        ("/users/../admin", "/admin"),
        ("/users/%2e%2e/admin", "/admin"),
        ("/users/%2E%2E/admin", "/admin"),
        ("/users/.%2e/admin", "/admin"),
        ("//admin", "/admin"),
        ("/users//..//admin", "/admin"),
        ("/a/./b/", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/../../..", "/"),
        ("/users%2f..%2fadmin", "/admin"),
        ("/caf%C3%A9", "/café"),
        ("/.well-known/x", "/.well-known/x"),
    ],
)
def test_normalize(raw, canonical):
    assert normalize_path(raw) == canonical


@pytest.mark.parametrize(
    "raw", ["/a%", "/a%2", "/a%zz", "/a%00b", "/a%5c..", "/a\\b", "/%ff", "x/y", ""]
)
def test_unnormalisable_paths_are_rejected(raw):
    with pytest.raises(PathError):
        normalize_path(raw)


def table():
    return RouteTable(
        [
            Route("users", "/users", "public", auth=False),
            Route("admin", "/admin", "private", auth=True),
            Route("root", "/", "web"),
            Route("api-get", "/api", "api", methods=frozenset({"GET"})),
            Route("api-host", "/api", "api2", host="api.example.com"),
        ]
    )


@pytest.mark.parametrize(
    ("method", "host", "raw", "route"),
    [
        ("GET", None, "/users", "users"),
        ("GET", None, "/users/7", "users"),
        ("GET", None, "/usersx", "root"),
        ("GET", None, "/users/../admin", "admin"),
        ("GET", None, "/users/%2e%2e/admin/x", "admin"),
        ("GET", None, "//admin", "admin"),
        ("GET", "localhost:8081", "/api/x", "api-get"),
        ("POST", "API.example.com:8081", "/api/x", "api-host"),
        ("GET", "api.example.com", "/api", "api-host"),
    ],
)
def test_match(method, host, raw, route):
    assert table().match(method, host, normalize_path(raw)).name == route


def test_method_not_allowed_reports_allow():
    t = RouteTable([Route("api", "/api", "x", methods=frozenset({"GET", "HEAD"}))])
    with pytest.raises(NoRoute) as info:
        t.match("POST", None, "/api")
    assert info.value.allowed == {"GET", "HEAD"}
    with pytest.raises(NoRoute) as info:
        t.match("GET", None, "/other")
    assert info.value.allowed is None


def test_strip_prefix():
    r = Route("svc", "/svc", "x", strip_prefix=True)
    assert r.upstream_path("/svc") == "/"
    assert r.upstream_path("/svc/a/b") == "/a/b"
    assert Route("root", "/", "x", strip_prefix=True).upstream_path("/a") == "/a"


segments = st.lists(
    st.sampled_from(["users", "admin", "..", ".", "", "%2e%2e", "%2E", "a b", "%2F", "x%41"]),
    max_size=8,
)


@given(segments)
def test_property_route_follows_what_the_upstream_would_resolve(parts):
    """Whatever the spelling, we pick the route for the path an RFC 3986 resolver sees."""
    raw = "/" + "/".join(quote(p, safe="%") for p in parts)
    canonical = normalize_path(raw)
    resolved = posixpath.normpath("/" + unquote(raw).replace("//", "/"))
    resolved = "/" + resolved.lstrip("/")
    assert (canonical.rstrip("/") or "/") == (resolved.rstrip("/") or "/")
    assert normalize_path(encode_path(canonical)) == canonical
    route = table().match("GET", None, canonical).name
    first = resolved.strip("/").split("/")[0]
    expected = {"users": "users", "admin": "admin"}.get(first, "root")
    assert route == expected
