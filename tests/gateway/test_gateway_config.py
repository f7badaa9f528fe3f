"""Config validation: every mistake is reported with the key that holds it."""

from __future__ import annotations

import copy
import tomllib

import pytest

from gateway.config import DEMO_TOML, build, demo, load
from minisys.config import ConfigError

BASE = {
    "upstreams": {"shop": {"members": ["127.0.0.1:8091"]}},
    "routes": [{"name": "shop", "path": "/shop/", "upstream": "shop", "auth": True}],
    "consumers": {"demo": {"keys": ["minisys-demo-key"], "limit": {"quota": 5, "window": 10}}},
}


def with_change(path, value):
    data = copy.deepcopy(BASE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def test_demo_config_is_valid():
    cfg = demo()
    assert [r.name for r in cfg.routes] == ["catalogue", "shop"]
    assert cfg.upstreams["shop"].members == [("127.0.0.1", 8091), ("127.0.0.1", 8092)]
    ids = {c.id: c for c in cfg.consumers}
    assert ids["demo"].keys == ("minisys-demo-key",)
    assert ids["demo"].limit.quota == 5
    assert ids["bench"].limit.quota >= 100_000
    assert tomllib.loads(DEMO_TOML)


def test_base_builds_and_normalises_the_prefix():
    cfg = build(BASE)
    assert cfg.routes[0].path == "/shop"
    assert cfg.consumers[0].limit.burst == 5
    assert cfg.max_body == 1 << 20 and cfg.max_header == 16 << 10
    assert cfg.fail_open


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("routes", 0, "upstream"), "shp", "routes[0].upstream: unknown upstream 'shp'"),
        (("routes", 0, "pth"), "/x", "routes[0].pth: unknown key"),
        (("routes", 0, "methods"), ["get"], "routes[0].methods[0]"),
        (("routes", 0, "consumers"), ["eve"], "routes[0].consumers[0]: unknown consumer 'eve'"),
        (("routes", 0, "path"), "shop", "routes[0].path: path must start with /"),
        (("routes", 0, "auth"), "yes", "routes[0].auth: expected a boolean"),
        (("upstreams", "shop", "members"), ["localhost"], "upstreams.shop.members[0]"),
        (("upstreams", "shop", "members"), [], "upstreams.shop.members: needs at least one"),
        (("upstreams", "shop", "retries"), 50, "upstreams.shop.retries"),
        (("upstreams", "shop", "read_timeout"), 0, "upstreams.shop.read_timeout"),
        (("consumers", "demo", "limit", "quota"), 0, "consumers.demo.limit.quota"),
        (("consumers", "demo", "limit", "policy"), "global", "consumers.demo.limit.policy"),
        (("consumers", "demo", "limit", "policy"), "shared", "ratelimit.store"),
        (("consumers", "demo", "keys"), ["short"], "consumers.demo.keys[0]"),
        (("consumers", "demo", "jwt_issuer"), "iss", "consumers.demo.jwt_secret"),
        (("gateway",), {"trusted_proxies": ["lb"]}, "gateway.trusted_proxies[0]"),
        (("gateway",), {"max_body": "lots"}, "gateway.max_body"),
        (("ratelimit",), {"on_store_error": "maybe"}, "ratelimit.on_store_error"),
    ],
)
def test_errors_name_the_bad_key(path, value, message):
    with pytest.raises(ConfigError) as info:
        build(with_change(path, value))
    assert message in str(info.value)


def test_duplicate_route_names_and_keys():
    data = copy.deepcopy(BASE)
    data["routes"].append(dict(data["routes"][0]))
    with pytest.raises(ConfigError, match=r"routes\[1\].name: duplicate"):
        build(data)
    data = with_change(("consumers", "other"), {"keys": ["minisys-demo-key"]})
    with pytest.raises(ConfigError, match="already belongs to 'demo'"):
        build(data)


def test_load_names_the_file(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[[routes]]\nname = "x"\npath = "/"\nupstream = "nope"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(str(path))
    assert "routes[0].upstream" in str(info.value)
    path.write_text("[[routes]\n")
    with pytest.raises(ConfigError, match=str(path)):
        load(path)
    path.write_text(DEMO_TOML)
    assert load(path).source == str(path)
