"""dockercloud-haproxy settings pylb does not take, and what to say about them.

Owns: the list of that image's global environment variables that have no
pylb equivalent, each with the reason (docs/migration.md has the whole
table). Must not know: how supported settings are parsed (``pylb.config``).
The warnings name the variable, never its value (it may hold secrets).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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
    "STATS_AUTH": "no stats page; Balancer.statistics() is the embedding API's",
    "STATS_PORT": "no stats page; Balancer.statistics() is the embedding API's",
    "MONITOR_URI": "use 'pylb healthcheck' (the image's HEALTHCHECK)",
    "MONITOR_PORT": "use 'pylb healthcheck' (the image's HEALTHCHECK)",
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
