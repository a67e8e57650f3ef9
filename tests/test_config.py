import pathlib

import pytest

from pylb import config as cfg
from pylb.core.errors import ConfigError
from pylb.core.models import Backend
from pylb.core.timeouts import Timeouts

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_reference_in_docs_matches_the_code() -> None:
    assert DOCS.read_text() == cfg.reference_markdown(), "run: scripts/gen-config-reference"


def test_flag_wins_over_env_which_wins_over_default() -> None:
    env = {"BALANCE": "leastconn", "MAXCONN": "10"}
    assert cfg.from_sources({}, {}).balance == "roundrobin"
    assert cfg.from_sources({}, env).balance == "leastconn"
    assert cfg.from_sources({"balance": "roundrobin"}, env).balance == "roundrobin"
    assert cfg.from_sources({}, env).maxconn == 10


def test_repeatable_options_from_env() -> None:
    config = cfg.from_sources({}, {"PYLB_BACKENDS": "a:1 b:2,weight=3;c:3", "PYLB_BIND": "127.0.0.1:81 http://[::1]:82"})
    assert config.backends == (Backend("a", 1), Backend("b", 2, 3), Backend("c", 3))
    assert [str(b) for b in config.binds] == ["http://127.0.0.1:81", "http://[::1]:82"]


def test_haproxy_timeout_syntax() -> None:
    timeouts = Timeouts.parse("connect 5000, client 1m, server 50s, http-request 7000")
    assert (timeouts.connect, timeouts.client, timeouts.server, timeouts.request_head) == (5, 60, 50, 7)
    assert timeouts.tunnel == 3600


@pytest.mark.parametrize(
    ("given", "env", "fragment"),
    [
        ({"binds": ["ftp://1.2.3.4:80"]}, {}, "--bind: unknown scheme 'ftp'"),
        ({"binds": ["localhost"]}, {}, "--bind: 'localhost' is not HOST:PORT"),
        ({}, {"BALANCE": "fastest"}, "BALANCE: unknown algorithm 'fastest'"),
        ({}, {"MAXCONN": "lots"}, "MAXCONN: 'lots' must be a whole number"),
        ({}, {"TIMEOUT": "connect soon"}, "TIMEOUT: 'soon' is not a duration"),
        ({}, {"TIMEOUT": "queue 5000"}, "TIMEOUT: unknown timeout 'queue'"),
        ({}, {"PYLB_ACCESS_LOG": "maybe"}, "PYLB_ACCESS_LOG: 'maybe' is not a boolean"),
    ],
)
def test_bad_values_name_the_input(given: dict[str, object], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.from_sources(given, env)  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
