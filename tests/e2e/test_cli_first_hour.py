"""What a new user meets in the first hour with the ``pylb`` command (issue 19):
``pylb --check``, settings that cannot take effect, environment names that
are not pylb's, list separators, URLs given as addresses, the help, and the
address the log says it listens on. Real subprocesses; each message is
asserted whole, as the user reads it.

Every run gets a clean environment (PATH, PYTHONPATH and what the test
sets), so a variable of the machine running the tests cannot add a warning.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trustme
from e2e_kit import free_port
from test_cli import DEADLINE, running

import pylb

ROOT = str(Path(pylb.__file__).resolve().parent.parent)


def clean_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": ROOT, **extra}


def pylb_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pylb", *args],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of a refusal (exit 2, nothing else printed)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pylb: error: "), result.stderr
    return lines[0].removeprefix("pylb: error: ")


def warning_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The warnings of a check that passed (exit 0, one summary line)."""
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert len(result.stdout.splitlines()) == 1 and result.stdout.startswith("pylb --check: ok: "), result.stdout
    lines = result.stderr.splitlines()
    assert all(line.startswith("pylb: warning: ") for line in lines), result.stderr
    return [line.removeprefix("pylb: warning: ") for line in lines]


# -- pylb --check ----------------------------------------------------------------------------


def test_check_prints_what_would_run_and_exits_0_without_listening_or_dialling() -> None:
    with socket.socket() as taken:  # the port is in use: --check must not try to bind it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = pylb_cli(
            "--check", "--workers", "2", "--bind", f"127.0.0.1:{port}",
            "--backend", "10.0.0.5:80", "--backend", "10.0.0.6:80,weight=2", "--balance", "leastconn",
        )  # fmt: skip
        assert warning_lines(result) == []
        assert result.stdout == (
            f"pylb --check: ok: would listen on http://127.0.0.1:{port}; 2 backends, 0 routes, leastconn; "
            "2 workers; static backends\n"
        )
        # a start on that port (backends on this machine: a start dials them) finds it taken
        start = pylb_cli("--workers", "2", "--bind", f"127.0.0.1:{port}", "--backend", "127.0.0.1:9")
        assert error_line(start) == f"--bind http://127.0.0.1:{port}: Address already in use (choose another port)"


def test_check_names_certificates_routes_and_discovery() -> None:
    ca = trustme.CA()
    pem = ca.issue_cert("localhost").private_key_and_cert_chain_pem.bytes().decode()
    result = pylb_cli(
        "--check", "--workers", "1", "--bind", "https://127.0.0.1:8443", "--route", "a.test=127.0.0.1:9",
        SSL_CERT=pem,
    )  # fmt: skip
    assert result.stdout == (
        "pylb --check: ok: would listen on https://127.0.0.1:8443; 1 backends, 1 routes, roundrobin; "
        "1 certificate; 1 worker; static backends\n"
    )
    auto = pylb_cli("--check", "--workers", "1", "--discover", "auto")
    assert auto.stdout.endswith(
        "; 0 backends, 0 routes, roundrobin; 1 worker; "
        "discovery: auto (swarm on a swarm manager, docker when its socket answers, else links)\n"
    ), auto


def test_check_refuses_what_a_start_refuses_in_the_same_line() -> None:
    assert error_line(pylb_cli("--check", "--discover", "links")).startswith("--discover links: no linked containers")
    assert error_line(pylb_cli("--check")) == error_line(pylb_cli())  # no backends: what to pass


def test_the_help_names_the_subcommands_and_check() -> None:
    result = pylb_cli("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for name in ("'pylb demo'", "'pylb hello'", "'pylb healthcheck'", "--check"):
        assert name in text, name
    assert "--http-check 'METHOD PATH'" in text and "quote it: --http-check 'GET /health'" in text


def test_demo_help_lists_every_balance_choice_and_source_works() -> None:
    text = " ".join(pylb_cli("demo", "--help").stdout.split())
    assert "roundrobin, leastconn, source" in text
    port = free_port()
    args = ("demo", "--bind", f"127.0.0.1:{port}", "--balance", "source")
    with running(*args, ready=r"pylb demo: .*\(source\)", stream="stdout"):
        served = {httpx.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE).headers["x-served-by"] for _ in range(4)}
    assert len(served) == 1, f"one client address, one backend: {served}"


# -- the address in the log ------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_wildcard_bind_is_logged_as_bound_with_the_local_address_to_reach_it(workers: str) -> None:
    port = free_port()
    args = ("--workers", workers, "--bind", f"0.0.0.0:{port}", "--backend", "127.0.0.1:9")
    with running(*args, ready=r"listening on .*") as (match, _):
        assert match.group(0).startswith(
            f"listening on http://0.0.0.0:{port} (from this machine: http://127.0.0.1:{port}); 1 backends"
        ), match.group(0)
        # the conftest's reading of that line still finds the bound address
        found = re.search(r"listening on ((?:https?|tcp|tls)://[\d.]+:(\d+))", match.group(0))
        assert found is not None and found.group(1) == f"http://0.0.0.0:{port}"


# -- settings that cannot take effect --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ["--force-ssl", "--backend", "127.0.0.1:9"],
            {},
            "--force-ssl: no https listener to redirect to: the redirects would point where nothing listens "
            "(add --bind https://ADDR:PORT with a certificate, or drop --force-ssl)",
        ),
        (
            ["--backend", "127.0.0.1:9"],
            {"FORCE_SSL": "true", "MODE": "tcp"},
            "FORCE_SSL: no https listener to redirect to (MODE=tcp makes the default listeners TCP): the redirects "
            "would point where nothing listens (add --bind https://ADDR:PORT with a certificate, or drop FORCE_SSL)",
        ),
        (
            ["--mode", "tcp", "--route", "a.test=127.0.0.1:9"],
            {},
            "--route: routes choose by Host and path, and no listener speaks HTTP (--mode tcp makes the default "
            "listeners TCP) (add --bind http://ADDR:PORT, or drop --mode tcp)",
        ),
        (
            ["--send-proxy", "v2", "--bind", "http://127.0.0.1:8080", "--backend", "127.0.0.1:9"],
            {},
            "--send-proxy: only TCP listeners send a PROXY header, and every listener here is HTTP, so backends "
            "expecting one would never get it (add --bind tcp://ADDR:PORT, or drop --send-proxy)",
        ),
        (
            ["--bind", "https://127.0.0.1:8443", "--backend", "127.0.0.1:9"],
            {},
            "--bind https://127.0.0.1:8443: no certificate for https (set SSL_CERT or pass --ssl-cert FILE)",
        ),
    ],
    ids=["force-ssl", "FORCE_SSL-MODE=tcp", "route-mode-tcp", "send-proxy-http", "https-no-cert"],
)
def test_contradicting_settings_stop_with_one_line_naming_them(args: list[str], env: dict[str, str], line: str) -> None:
    assert error_line(pylb_cli("--check", *args, **env)) == line
    assert error_line(pylb_cli("--workers", "1", *args, **env)) == line, "a start refuses it as --check does"


def test_an_empty_cert_folder_is_named_as_the_problem(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    refused = pylb_cli("--check", "--cert-folder", str(folder), "--bind", "https://127.0.0.1:8443", "--backend", "a:1")
    assert error_line(refused) == (
        f"--cert-folder {folder}: no *.pem file in that folder, and https://127.0.0.1:8443 needs a certificate "
        "(put PEM files holding a key and its chain there, or set SSL_CERT or --ssl-cert FILE)"
    )
    assert error_line(pylb_cli("--check", "--bind", "https://127.0.0.1:8443", "--backend", "a:1",
                               CERT_FOLDER=str(folder))).startswith(f"CERT_FOLDER {folder}: no *.pem file")  # fmt: skip
    assert warning_lines(pylb_cli("--check", "--cert-folder", str(folder), "--backend", "a:1")) == [
        f"--cert-folder {folder}: no *.pem file in that folder, so it adds no certificate"
    ]


@pytest.mark.parametrize(
    ("args", "env", "lines"),
    [
        (
            ["--hsts-max-age", "600", "--backend", "127.0.0.1:9"],
            {},
            ["--hsts-max-age: no https listener, so no response carries Strict-Transport-Security "
             "(it goes on https responses only)"],
        ),
        (
            ["--bind", "127.0.0.1:8080", "--backend", "127.0.0.1:9"],
            {"SSL_CERT": "(a certificate)"},
            ["SSL_CERT: no https:// or tls:// listener serves it (add --bind https://ADDR:PORT)"],
        ),
        (
            ["--http-check", "GET /health", "--health-check", "none", "--backend", "127.0.0.1:9"],
            {},
            ["--http-check: health checks are off (--health-check none), so no HTTP check is sent "
             "(drop one of them)"],
        ),
        (
            ["--force-ssl", "--bind", "https://127.0.0.1:8443", "--backend", "127.0.0.1:9"],
            {"SSL_CERT": "(a certificate)"},
            ["--force-ssl: no plain-HTTP listener, so there is nothing to redirect (every one is https)"],
        ),
    ],
    ids=["hsts", "ssl-cert-no-https", "http-check-checks-off", "force-ssl-https-only"],
)  # fmt: skip
def test_useless_settings_start_with_one_warning_line(args: list[str], env: dict[str, str], lines: list[str]) -> None:
    if env.get("SSL_CERT") == "(a certificate)":
        env = {"SSL_CERT": trustme.CA().issue_cert("localhost").private_key_and_cert_chain_pem.bytes().decode()}
    assert warning_lines(pylb_cli("--check", "--workers", "1", *args, **env)) == lines


def test_a_useless_setting_warns_at_start_too() -> None:
    with running("--workers", "1", "--bind", "127.0.0.1:0", "--backend", "127.0.0.1:9", "--hsts-max-age", "60",
                 ready=r"listening on") as (_, lines):  # fmt: skip
        assert lines[0].startswith("pylb: warning: --hsts-max-age: no https listener"), lines


# -- the environment -----------------------------------------------------------------------------


def test_near_misses_and_unknown_pylb_names_are_warned_about_by_name_never_by_value() -> None:
    secret = "s3cr3t-do-not-print"
    result = pylb_cli(
        "--check", "--workers", "1", "--backend", "127.0.0.1:9",
        BALANCER="leastconn", PYLB_BACKEND=secret, healthcheck=secret, PYLB_COLOUR=secret,
        PYLB_TEST_ANYTHING="1", RELOAD_TIMEOUT="5", HTTP_PROXY=secret,
    )  # fmt: skip
    assert warning_lines(result) == [
        "ignoring RELOAD_TIMEOUT: pylb never reloads: discovery swaps its pool in memory (see docs/migration.md)",
        "ignoring BALANCER: not a pylb setting; did you mean BALANCE? (see docs/configuration.md)",
        "ignoring PYLB_BACKEND: not a pylb setting; did you mean PYLB_BACKENDS? (see docs/configuration.md)",
        "ignoring PYLB_COLOUR: not a pylb setting (the PYLB_ variables: see docs/configuration.md)",
        "ignoring healthcheck: not a pylb setting; did you mean HEALTH_CHECK? (see docs/configuration.md)",
    ]
    assert secret not in result.stdout + result.stderr
    assert "roundrobin" in result.stdout, "BALANCER is not BALANCE: the default stays"


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"PYLB_BACKENDS": "10.0.0.5:80,10.0.0.6:80"},
            "PYLB_BACKENDS: unknown option '10.0.0.6:80' in '10.0.0.5:80,10.0.0.6:80' (known: weight=N); "
            "PYLB_BACKENDS is a list separated by spaces or ;, not commas",
        ),
        (
            {"PYLB_BIND": "0.0.0.0:80,0.0.0.0:81", "PYLB_BACKENDS": "127.0.0.1:9"},
            "PYLB_BIND: '0.0.0.0:80,0.0.0.0' is not a host name or IP address; "
            "PYLB_BIND is a list separated by spaces or ;, not commas",
        ),
        (
            {"ROUTES": "a.test=10.0.0.5:80 b.test=10.0.0.6:80"},
            "ROUTES: '10.0.0.5:80 b.test=10.0.0.6' is not a host name or IP address; "
            "ROUTES is a list separated by ;, not spaces",
        ),
        (
            {"PYLB_ACCEPT_PROXY": "10.0.0.0/8 192.168.0.0/16", "PYLB_BACKENDS": "127.0.0.1:9"},
            "PYLB_ACCEPT_PROXY: '10.0.0.0/8 192.168.0.0/16' is not an address or CIDR range (example: 10.0.0.0/8); "
            "PYLB_ACCEPT_PROXY is a list separated by commas",
        ),
        (
            {"PYLB_BACKENDS": "127.0.0.1:9 nohost"},
            "PYLB_BACKENDS: 'nohost' is not HOST:PORT (example: 127.0.0.1:8080); "
            "PYLB_BACKENDS is a list separated by spaces or ;",
        ),
    ],
    ids=["backends-commas", "bind-commas", "routes-spaces", "accept-proxy-spaces", "backends-bad-item"],
)
def test_every_list_variables_error_names_its_separator(env: dict[str, str], line: str) -> None:
    assert error_line(pylb_cli("--check", **env)) == line


def test_a_url_where_an_address_belongs_is_told_to_drop_the_scheme() -> None:
    assert error_line(pylb_cli("--check", "--backend", "http://10.0.0.5:80")) == (
        "--backend: 'http://10.0.0.5:80' is a URL where HOST:PORT is expected: drop the scheme ('10.0.0.5:80')"
    )
    assert error_line(pylb_cli("--check", "--route", "a.test=https://10.0.0.7")) == (
        "--route: 'https://10.0.0.7' is a URL where HOST:PORT is expected: drop the scheme ('10.0.0.7:443')"
    )
    assert error_line(pylb_cli("--check", "--backend", "10.0.0.5:80,10.0.0.6:80")) == (
        "--backend: unknown option '10.0.0.6:80' in '10.0.0.5:80,10.0.0.6:80' (known: weight=N); "
        "one per --backend: repeat --backend for several"
    )
