"""Config errors name the bad key; log lines carry the component and the request id."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Literal

import pytest

from minisys.config import ConfigError, from_mapping, load_toml, parse_size
from minisys.logs import JsonFormatter, request_id, setup_logging


@dataclass
class Limits:
    rate: float = 10.0
    burst: int = 20


@dataclass
class Route:
    prefix: str
    methods: list[str] = field(default_factory=lambda: ["GET"])
    policy: Literal["local", "shared"] = "local"
    limits: Limits = field(default_factory=Limits)


def test_values_are_converted_and_defaults_kept():
    route = from_mapping(Route, {"prefix": "/users", "limits": {"rate": 5}}, where="routes[0]")
    assert route == Route(prefix="/users", limits=Limits(rate=5.0, burst=20))
    assert isinstance(route.limits.rate, float)


@pytest.mark.parametrize(
    "data,message",
    [
        ({"prefix": "/u", "prot": 1}, "routes[0].prot: unknown key"),
        ({}, "routes[0].prefix: required key is missing"),
        ({"prefix": 3}, "routes[0].prefix: expected a string, got an integer 3"),
        ({"prefix": "/u", "methods": ["GET", 1]}, "routes[0].methods[1]: expected a string"),
        ({"prefix": "/u", "policy": "global"}, "routes[0].policy: 'global' is not one of"),
        ({"prefix": "/u", "limits": {"burst": True}}, "routes[0].limits.burst: expected an int"),
        ({"prefix": "/u", "limits": []}, "routes[0].limits: expected a table"),
    ],
)
def test_errors_name_the_bad_key(data, message):
    with pytest.raises(ConfigError) as exc:
        from_mapping(Route, data, where="routes[0]")
    assert message in str(exc.value)


def test_toml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nport = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_toml(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_toml(tmp_path / "missing.toml")
    good = tmp_path / "good.toml"
    good.write_text('[route]\nprefix = "/x"\n')
    assert from_mapping(Route, load_toml(good)["route"]).prefix == "/x"


@pytest.mark.parametrize(
    "text,value", [("64mb", 64 << 20), ("1GB", 1 << 30), ("512kb", 512 << 10), ("100", 100)]
)
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "mb", "-1mb", "1.5mb", "١٢mb", "1_0mb"])
def test_bad_sizes(text):
    with pytest.raises(ConfigError):
        parse_size(text)


def test_json_log_lines_carry_component_and_request_id():
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "placed %s", ("o-1",), None)
    token = request_id.set("req-42")
    try:
        line = json.loads(JsonFormatter("appserver").format(record))
    finally:
        request_id.reset(token)
    assert line["component"] == "appserver"
    assert line["request_id"] == "req-42"
    assert line["msg"] == "placed o-1"
    assert line["level"] == "info"


def test_human_log_lines(capsys):
    setup_logging("kvcache", fmt="human", level="info")
    logging.getLogger("t").info("hello %d", 7)
    err = capsys.readouterr().err
    assert "INFO" in err and "kvcache" in err and "hello 7" in err
    with pytest.raises(ValueError):
        setup_logging("x", fmt="xml")
