"""Environment variables pylb does not take, and what to say about them.

Owns: the list of dockercloud-haproxy's global environment variables that
have no pylb equivalent, each with the reason (docs/migration.md has the
whole table), and the spotting of near-misses of pylb's own names
(``BALANCER``, ``PYLB_BACKEND``) and of unknown ``PYLB_`` names. Must not
know: how supported settings are parsed (``pylb.config``; the CLI passes
their names in). The warnings name the variable, never its value (it may
hold secrets).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

RAW_HAPROXY = "raw HAProxy configuration has no pylb equivalent"
UNSUPPORTED: dict[str, str] = {
    "EXTRA_GLOBAL_SETTINGS": RAW_HAPROXY,
    "EXTRA_GLOBAL_SETTINGS_FILE": RAW_HAPROXY,
    "EXTRA_DEFAULT_SETTINGS": RAW_HAPROXY,
    "EXTRA_DEFAULT_SETTINGS_FILE": RAW_HAPROXY,
    "EXTRA_BIND_SETTINGS": RAW_HAPROXY,
    "EXTRA_ROUTE_SETTINGS": RAW_HAPROXY,
    "EXTRA_SSL_CERTS": "name the files with --ssl-cert FILE or put them in CERT_FOLDER",
    "OPTION": "HAProxy 'option' lines have no pylb equivalent; pylb's behaviour is documented in docs/http.md",
    "NBPROC": "use --workers N (PYLB_WORKERS)",
    "RELOAD_TIMEOUT": "pylb never reloads: discovery swaps its pool in memory",
    "RSYSLOG_DESTINATION": "pylb logs to standard error; let the container runtime ship it",
    "HTTP_BASIC_AUTH": "pylb does no authentication; put it in the application or a middleware",
    "HTTP_BASIC_AUTH_SECURE": "pylb does no authentication; put it in the application or a middleware",
    "SSL_BIND_CIPHERS": "pylb's TLS settings are fixed to Mozilla's intermediate profile (docs/tls.md)",
    "SSL_BIND_OPTIONS": "pylb's TLS settings are fixed to Mozilla's intermediate profile (docs/tls.md)",
    "CA_CERT_FILE": "client certificate authentication is not supported",
    "CA_CERT": "client certificate authentication is not supported",
    "SKIP_FORWARDED_PROTO": "pylb always sets X-Forwarded-Proto",
    "FORCE_DEFAULT_BACKEND": "the default service is the one without routes (docs/routing.md)",
    "ADDITIONAL_SERVICES": "Tutum/Docker Cloud service links are gone; use Docker discovery or --route",
    "TCP_PORTS": "it belongs on the application containers (pylb listens on the ports they list); "
    "for a TCP listener of pylb's own, use --bind tcp://0.0.0.0:PORT",
}
PATTERNS: dict[str, str] = {
    r"EXTRA_FRONTEND_SETTINGS_(FILE_)?\d+": RAW_HAPROXY,
    r"ADDITIONAL_BACKEND_\w+": "use --route HOST=ADDR:PORT for a backend outside Docker",
}


def unsupported(env: Mapping[str, str]) -> list[str]:
    """One line for each dockercloud-haproxy variable set in ``env`` that
    pylb ignores, naming it and saying why (never its value)."""
    lines = []
    for name in sorted(env):
        if not env[name].strip():
            continue
        reason = UNSUPPORTED.get(name)
        if reason is None:
            reason = next((why for pattern, why in PATTERNS.items() if re.fullmatch(pattern, name)), None)
        if reason is not None:
            lines.append(f"ignoring {name}: {reason} (see docs/migration.md)")
    return lines


# Read by pylb besides its own settings (the Docker SDK's variables).
ALSO_READ = frozenset({"DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"})
# PYLB_ names of the project's own tooling, not of pylb: scripts/build-image's cache, the test suite's.
TOOLING = frozenset({"PYLB_IMAGE_CACHE", "PYLB_FUZZ_EXAMPLES"})
TOOLING_PREFIX = "PYLB_TEST_"


def unknown(env: Mapping[str, str], known: Collection[str]) -> list[str]:
    """One line for each variable set in ``env`` that looks meant for pylb
    but is not one of its ``known`` names: a near-miss of one (a typo, a
    plural, another case: named with the likely one) or an unknown ``PYLB_``
    name. Never the value."""
    names = frozenset(known) | ALSO_READ
    lines = []
    for name in sorted(env):
        if not env[name].strip() or name in names or _quiet(name):
            continue
        guess = closest(name, names)
        if guess is not None:
            lines.append(f"ignoring {name}: not a pylb setting; did you mean {guess}? (see docs/configuration.md)")
        elif name.startswith("PYLB_"):
            lines.append(f"ignoring {name}: not a pylb setting (the PYLB_ variables: see docs/configuration.md)")
    return lines


def _quiet(name: str) -> bool:
    """Names that are known without being pylb's settings."""
    return (
        name in UNSUPPORTED
        or name in TOOLING
        or name.startswith(TOOLING_PREFIX)
        or any(re.fullmatch(pattern, name) for pattern in PATTERNS)
    )


def closest(name: str, known: Collection[str]) -> str | None:
    """The known name ``name`` is most likely a misspelling of: the same in
    another case, else one edit away (two for names of 10 letters or more;
    none for names under 5, too many of which are one edit apart), else None."""
    upper = name.upper()
    best: tuple[int, str] | None = None
    for candidate in sorted(known):
        if upper == candidate:
            return candidate
        allowed = 2 if len(candidate) >= 10 else 1
        if len(name) < 5 or abs(len(candidate) - len(upper)) > allowed:
            continue  # (an edit changes the length by one at most: no need to count them)
        distance = edit_distance(upper, candidate)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) from ``a`` to ``b``."""
    previous, current = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        before, previous, current = previous, current, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1] and before is not None:
                current[j] = min(current[j], before[j - 2] + 1)
    return current[len(b)]
