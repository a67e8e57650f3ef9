"""Health: when a backend is up, from active checks and passive observations.

Owns: HAProxy's rise/fall rule and the check settings (``HEALTH_CHECK`` in
dockercloud-haproxy's form ``check inter 2000 rise 2 fall 3``; ``HTTP_CHECK``
as ``METHOD PATH``). Must not know: how a check is made (``pylb.net.health``
does the I/O) or time.

Invariants: a backend goes down after ``fall`` consecutive failures and up
after ``rise`` consecutive successes; one observation never flips it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pylb.core.errors import ConfigError
from pylb.core.timeouts import parse_duration

if TYPE_CHECKING:  # models (Service.check) imports this module, and state imports models
    from pylb.core.state import BackendState


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """``enabled``: active checks run; ``inter``: seconds between checks;
    ``http``: ``(method, path)`` for an HTTP check (2xx/3xx is healthy), or
    None for a TCP connect check."""

    enabled: bool = True
    inter: float = 2.0
    rise: int = 2
    fall: int = 3
    http: tuple[str, str] | None = None

    @classmethod
    def parse(cls, text: str, what: str = "HEALTH_CHECK") -> HealthCheck:
        """``check inter 2000 rise 2 fall 3`` (HAProxy server options); an
        empty value or ``none`` turns active checks off."""
        words = text.split()
        if not words or words == ["none"]:
            return cls(enabled=False)
        values: dict[str, float | int] = {}
        i = 0
        while i < len(words):
            word = words[i]
            if word == "check":
                i += 1
                continue
            if word not in ("inter", "rise", "fall") or i + 1 >= len(words):
                raise ConfigError(f"{what}: cannot read {word!r} in {text!r} (example: check inter 2000 rise 2 fall 3)")
            value = words[i + 1]
            if word == "inter":
                values["inter"] = parse_duration(value, what)
            elif not value.isdigit() or not 1 <= int(value) <= 100:
                raise ConfigError(f"{what}: {word} {value!r} must be a whole number from 1 to 100")
            else:
                values[word] = int(value)
            i += 2
        return cls(
            True, float(values.get("inter", 2.0)), int(values.get("rise", 2)), int(values.get("fall", 3))
        )

    def with_http(self, text: str, what: str = "HTTP_CHECK") -> HealthCheck:
        """Add an HTTP check from ``METHOD PATH`` (``GET /health``); the
        dockercloud-haproxy form ``OPTIONS * HTTP/1.1\\r\\nHost:\\ www`` is
        read as its method and target (what follows the request line is
        ignored: pylb sends its own Host)."""
        first = text.replace("\\r\\n", "\n").replace("\r\n", "\n").split("\n")[0]
        parts = first.split()
        if not parts:
            return self
        method, path = (parts[0].upper(), parts[1]) if len(parts) > 1 else ("GET", parts[0])
        if path == "*" and method == "OPTIONS":
            return HealthCheck(self.enabled, self.inter, self.rise, self.fall, (method, path))
        if not method.isalpha() or not path.startswith("/") or any(c.isspace() or ord(c) < 33 for c in path):
            raise ConfigError(f"{what}: {text!r} is not 'METHOD /path' (example: GET /health)")
        return HealthCheck(self.enabled, self.inter, self.rise, self.fall, (method, path))


def observe(state: BackendState, ok: bool, check: HealthCheck) -> bool:
    """Count one check result (or one passive observation) on ``state``;
    return True when it changed whether the backend is up."""
    if ok:
        state.fails_in_row = 0
        state.oks_in_row += 1
        if not state.healthy and state.oks_in_row >= check.rise:
            state.healthy = True
            return True
    else:
        state.oks_in_row = 0
        state.fails_in_row += 1
        if state.healthy and state.fails_in_row >= check.fall:
            state.healthy = False
            return True
    return False
