import subprocess
import sys

from pylb import compat
from pylb.config import OPTIONS


def test_unsupported_variables_are_named_without_their_values() -> None:
    env = {
        "EXTRA_GLOBAL_SETTINGS": "tune.ssl.default-dh-param 2048",
        "EXTRA_FRONTEND_SETTINGS_443": "reqadd X-Secret:\\ s3cr3t",
        "HTTP_BASIC_AUTH": "admin:hunter2",
        "STATS_AUTH": "admin:hunter2",  # taken by pylb now (the stats port's Basic auth): not ignored
        "BALANCE": "leastconn",
        "EXTRA_ROUTE_SETTINGS": "",
    }
    lines = compat.unsupported(env)
    assert [line.split(":")[0] for line in lines] == [
        "ignoring EXTRA_FRONTEND_SETTINGS_443",
        "ignoring EXTRA_GLOBAL_SETTINGS",
        "ignoring HTTP_BASIC_AUTH",
    ]
    assert not any("hunter2" in line or "s3cr3t" in line or "2048" in line for line in lines)


def test_the_cli_warns_and_goes_on() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pylb", "--bind", "999.1.1.1:1", "--backend", "127.0.0.1:9"],
        env={"PATH": "/usr/bin:/bin", "HTTP_BASIC_AUTH": "admin:hunter2"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "pylb: warning: ignoring HTTP_BASIC_AUTH: pylb does no authentication" in result.stderr
    assert "hunter2" not in result.stderr
    assert result.returncode == 2  # and the bad --bind is still the error it was



def test_tcp_ports_on_pylb_itself_says_where_it_belongs() -> None:
    assert compat.unsupported({"TCP_PORTS": "5432, 2222/ssl"}) == [
        "ignoring TCP_PORTS: it belongs on the application containers (pylb listens on the ports they list); "
        "for a TCP listener of pylb's own, use --bind tcp://0.0.0.0:PORT (see docs/migration.md)"
    ]


def test_near_misses_are_one_edit_away_and_common_variables_are_not() -> None:
    known = {option.env for option in OPTIONS if option.env}
    assert compat.closest("BALANCER", known) == "BALANCE"
    assert compat.closest("PYLB_BAKCENDS", known) == "PYLB_BACKENDS"  # two letters swapped: one edit
    assert compat.closest("mode", known) == "MODE"  # case only
    assert compat.closest("HEALTHCHEK", known) == "HEALTH_CHECK"  # two edits: a long name
    common = ["HOME", "PATH", "HOSTNAME", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR",
              "NODE", "TERM", "LANG", "SHELL", "PWD", "TZ", "DEBUG", "VIRTUAL_HOST", "DOCKER_CONFIG"]  # fmt: skip
    assert {name: compat.closest(name, known) for name in common} == dict.fromkeys(common)
    quiet = {"PYLB_TEST_RESTART_DOCKERD": "1", "PYLB_IMAGE_CACHE": "/x", "PYLB_BACKEND": " "}  # tooling; blank
    assert compat.unknown(quiet, known) == []
