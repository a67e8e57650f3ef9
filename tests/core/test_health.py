import pytest

from pylb import config as cfg
from pylb.core.errors import ConfigError
from pylb.core.health import HealthCheck, observe
from pylb.core.models import Backend
from pylb.core.state import BackendState


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("check inter 2000 rise 2 fall 3", HealthCheck(True, 2.0, 2, 3)),
        ("check", HealthCheck()),
        ("inter 5s fall 1", HealthCheck(True, 5.0, 2, 1)),
        ("none", HealthCheck(enabled=False)),
        ("", HealthCheck(enabled=False)),
    ],
)
def test_haproxy_server_options(text: str, expected: HealthCheck) -> None:
    assert HealthCheck.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("check inter", "cannot read 'inter'"),
        ("rise 0", "rise '0'"),
        ("check weight 3", "cannot read 'weight'"),
        ("inter 5x", "'5x'"),
    ],
)
def test_bad_health_check_names_the_variable(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        HealthCheck.parse(text)
    assert str(info.value).startswith("HEALTH_CHECK: ") and fragment in str(info.value)


def test_http_check_from_config() -> None:
    config = cfg.from_sources({}, {"HEALTH_CHECK": "check inter 500 fall 2", "HTTP_CHECK": "HEAD /ping"})
    assert config.health == HealthCheck(True, 0.5, 2, 2, ("HEAD", "/ping"))
    with pytest.raises(ConfigError, match="HTTP_CHECK: 'ping' is not 'METHOD /path'"):
        cfg.from_sources({}, {"HTTP_CHECK": "ping"})


def test_rise_and_fall() -> None:
    state = BackendState(Backend("a", 1))
    check = HealthCheck(rise=2, fall=3)
    assert [observe(state, False, check) for _ in range(3)] == [False, False, True]
    assert not state.healthy
    assert [observe(state, True, check) for _ in range(2)] == [False, True]
    assert state.healthy
    observe(state, False, check)
    observe(state, True, check)  # a success in between resets the count of failures
    assert [observe(state, False, check) for _ in range(2)] == [False, False] and state.healthy


def test_dockercloud_raw_http_check_is_read_as_its_request_line() -> None:
    config = cfg.from_sources({}, {"HTTP_CHECK": "OPTIONS * HTTP/1.1\\r\\nHost:\\ www"})
    assert config.health.http == ("OPTIONS", "*")
