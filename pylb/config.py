"""One typed, frozen configuration, and the table of options it is built from.

Owns: every user-facing setting: its flag, its environment variable (the
dockercloud-haproxy name where one exists), its default and its parser.
The CLI and the configuration reference in the docs are generated from
``OPTIONS``, so they cannot drift. Precedence: flag, then env, then default.
Must not know: trio, sockets, or how settings are used.

Invalid input raises ConfigError with one line naming the input and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pylb.core.errors import ConfigError
from pylb.core.models import Backend, parse_balance, split_host_port
from pylb.core.timeouts import Timeouts, parse_duration

SCHEMES = ("http",)


@dataclass(frozen=True, slots=True)
class Bind:
    """A listening address: ``[SCHEME://]ADDR:PORT``."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, what: str = "--bind") -> Bind:
        scheme, sep, rest = text.strip().partition("://")
        if not sep:
            scheme, rest = "http", text.strip()
        if scheme not in SCHEMES:
            raise ConfigError(f"{what}: unknown scheme {scheme!r} in {text!r} (use: {', '.join(SCHEMES)})")
        if rest.isdigit():
            rest = f"0.0.0.0:{rest}"
        host, port = split_host_port(rest, what)
        return cls(scheme, host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    binds: tuple[Bind, ...] = (Bind("http", "0.0.0.0", 80),)
    backends: tuple[Backend, ...] = ()
    balance: str = "roundrobin"
    maxconn: int = 4096
    timeouts: Timeouts = field(default_factory=Timeouts)
    access_log: bool = False
    grace: float = 10.0

    def with_changes(self, **changes: Any) -> Config:
        return replace(self, **changes)


def _parse_int(low: int, high: int) -> Callable[[str, str], int]:
    def parse(text: str, what: str) -> int:
        text = text.strip()
        if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
            raise ConfigError(f"{what}: {text!r} must be a whole number from {low} to {high}")
        return int(text)

    return parse


def parse_bool(text: str, what: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{what}: {text!r} is not a boolean (use true or false)")


def _parse_seconds(text: str, what: str) -> float:
    text = text.strip()
    return parse_duration(text if not text.isdigit() else text + "s", what)


@dataclass(frozen=True, slots=True)
class Option:
    """One setting. ``parse(text, what)`` turns user text into a value;
    ``repeat`` options take the flag many times, or a list in the env var."""

    dest: str
    flag: str
    env: str | None
    metavar: str
    help: str
    parse: Callable[[str, str], Any]
    example: str
    repeat: bool = False
    env_separator: str = " "


OPTIONS: tuple[Option, ...] = (
    Option(
        "binds",
        "--bind",
        "PYLB_BIND",
        "[http://]ADDR:PORT",
        "Address to listen on; repeat for several listeners.",
        Bind.parse,
        "http://0.0.0.0:80",
        repeat=True,
    ),
    Option(
        "backends",
        "--backend",
        "PYLB_BACKENDS",
        "HOST:PORT[,weight=N]",
        "A backend of the default service; repeat for several. The env var takes a space-separated list.",
        Backend.parse,
        "10.0.0.5:8080,weight=2",
        repeat=True,
    ),
    Option(
        "balance",
        "--balance",
        "BALANCE",
        "ALGORITHM",
        "How to choose a backend: roundrobin (smooth, weighted) or leastconn (fewest requests in flight).",
        parse_balance,
        "leastconn",
    ),
    Option(
        "maxconn",
        "--maxconn",
        "MAXCONN",
        "N",
        "Most client connections served at once; more wait in the kernel's accept queue.",
        _parse_int(1, 1_000_000),
        "4096",
    ),
    Option(
        "timeouts",
        "--timeout",
        "TIMEOUT",
        "SPEC",
        "Timeouts in HAProxy's form, milliseconds unless suffixed: connect, client, server, "
        "http-request, tunnel, handshake.",
        Timeouts.parse,
        "connect 5000, client 50000, server 50000",
    ),
    Option(
        "access_log",
        "--access-log",
        "PYLB_ACCESS_LOG",
        "BOOL",
        "Log one line per request to standard error.",
        parse_bool,
        "true",
    ),
    Option(
        "grace",
        "--grace",
        "PYLB_GRACE",
        "SECONDS",
        "On SIGTERM, how long in-flight requests may take to finish.",
        _parse_seconds,
        "10",
    ),
)


def defaults() -> dict[str, Any]:
    return {name: getattr(Config(), name) for name in Config.__dataclass_fields__}


def from_sources(given: Mapping[str, Sequence[str] | str | None], env: Mapping[str, str] | None = None) -> Config:
    """Build the Config: ``given`` maps option dests to what the flags said
    (None when absent); ``env`` defaults to os.environ."""
    env = os.environ if env is None else env
    values = defaults()
    for option in OPTIONS:
        raw = given.get(option.dest)
        if raw is not None:
            what = option.flag
        elif option.env is not None and env.get(option.env, "").strip():
            what, raw = option.env, env[option.env]
            if option.repeat:
                raw = [part for part in raw.replace(";", option.env_separator).split(option.env_separator) if part]
        else:
            continue
        if option.repeat:
            assert not isinstance(raw, str)
            values[option.dest] = tuple(option.parse(item, what) for item in raw)
        else:
            assert isinstance(raw, str)
            values[option.dest] = option.parse(raw, what)
    return Config(**values)


def reference_markdown() -> str:
    """The configuration reference (docs/configuration.md), from ``OPTIONS``."""
    rows = [
        "# Configuration reference",
        "",
        "Generated from `pylb/config.py` (`python -m pylb.config > docs/configuration.md`); a test keeps",
        "this file equal to the code. Precedence: a flag, then its environment variable, then the default.",
        "",
        "| flag | env | default | example | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    base = defaults()
    for option in OPTIONS:
        default = base[option.dest]
        if isinstance(default, tuple):
            default = " ".join(str(d) for d in default) or "(none)"
        elif hasattr(default, "__dataclass_fields__"):
            default = ", ".join(f"{k} {getattr(default, k):g}s" for k in default.__dataclass_fields__)
        rows.append(
            f"| `{option.flag} {option.metavar}` | `{option.env or '-'}` | {default} | `{option.example}` "
            f"| {option.help} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
