"""Settings that cannot take effect: which contradict each other, which are useless.

Owns: the rules that look at the whole configuration at once (one setting's
own syntax is checked where it is parsed, in ``pylb.config``), and their
one-line messages, each naming the settings as the user gave them (flag or
environment variable) and the fix. Must not know: trio, sockets, discovery.

Invariant: an error is a setting pylb would have to serve against (its
traffic would not go as the setting says: a redirect to a port where nothing
listens, routes no request can reach, a PROXY header never sent, https with
no certificate); a warning is a setting with no effect at all, traffic being
exactly as without it. docs/configuration.md gives the table and the reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pylb.config import Config

TLS_SCHEMES = ("https", "tls")
HTTP_SCHEMES = ("http", "https")
_CERT_SOURCES = ("ssl_cert_files", "default_ssl_cert", "ssl_cert", "cert_folder")


@dataclass
class Review:
    """What is wrong with a configuration: errors (pylb must not start) and
    warnings (it starts; the setting does nothing)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def review(config: Config) -> Review:
    """Every contradiction and every useless setting in ``config``, in the
    order of docs/configuration.md's table."""
    found = Review()
    for rule in _RULES:
        rule(config, found)
    return found


def _schemes(config: Config) -> set[str]:
    return {bind.scheme for bind in config.listeners}


def _static(config: Config) -> bool:
    """Discovery is off: the backends are the ones the flags name (no
    container can ask for a TCP port)."""
    return bool(config.backends or config.routes)


def _tcp_mode(config: Config) -> str:
    """MODE=tcp as the user gave it: ``--mode tcp`` or ``MODE=tcp``."""
    name = config.named("mode")
    return f"{name} tcp" if name.startswith("--") else f"{name}=tcp"


def _tcp_mode_note(config: Config) -> str:
    return f" ({_tcp_mode(config)} makes the default listeners TCP)" if config.mode == "tcp" else ""


def _certificates(config: Config, found: Review) -> None:
    folder = config.named("cert_folder") if config.origin("cert_folder") else None
    empty_folder = folder is not None and not config.cert_folder
    for bind in config.listeners:
        if bind.scheme in TLS_SCHEMES and not config.certificates:
            if empty_folder:
                found.errors.append(
                    f"{folder}: no *.pem file in that folder, and {bind} needs a certificate "
                    "(put PEM files holding a key and its chain there, or set SSL_CERT or --ssl-cert FILE)"
                )
            else:
                found.errors.append(
                    f"{config.named('binds')} {bind}: no certificate for {bind.scheme} "
                    "(set SSL_CERT or pass --ssl-cert FILE)"
                )
            return
    if empty_folder:
        found.warnings.append(f"{folder}: no *.pem file in that folder, so it adds no certificate")
    if config.certificates and not _schemes(config) & set(TLS_SCHEMES):
        given = ", ".join(config.named(dest) for dest in _CERT_SOURCES if config.origin(dest) and getattr(config, dest))
        later = "" if _static(config) else "; only the /ssl ports of containers' TCP_PORTS can use it"
        found.warnings.append(
            f"{given or 'the certificate'}: no https:// or tls:// listener serves it "
            f"(add --bind https://ADDR:PORT{_tcp_mode_note(config)}{later})"
        )


def _force_ssl(config: Config, found: Review) -> None:
    if not config.force_ssl:
        return
    name, schemes = config.named("force_ssl"), _schemes(config)
    if "https" not in schemes:
        found.errors.append(
            f"{name}: no https listener to redirect to{_tcp_mode_note(config)}: the redirects would point where "
            f"nothing listens (add --bind https://ADDR:PORT with a certificate, or drop {name})"
        )
    elif "http" not in schemes:
        found.warnings.append(f"{name}: no plain-HTTP listener, so there is nothing to redirect (every one is https)")


def _hsts(config: Config, found: Review) -> None:
    if config.hsts_max_age and "https" not in _schemes(config):
        name = config.named("hsts_max_age")
        found.warnings.append(
            f"{name}: no https listener, so no response carries Strict-Transport-Security "
            f"(it goes on https responses only){_tcp_mode_note(config)}"
        )


def _routes(config: Config, found: Review) -> None:
    if config.routes and not _schemes(config) & set(HTTP_SCHEMES):
        name = config.named("routes")
        fix = f"drop {_tcp_mode(config)}" if config.mode == "tcp" else "drop the tcp:// and tls:// binds"
        found.errors.append(
            f"{name}: routes choose by Host and path, and no listener speaks HTTP{_tcp_mode_note(config)} "
            f"(add --bind http://ADDR:PORT, or {fix})"
        )


def _send_proxy(config: Config, found: Review) -> None:
    if config.send_proxy and _static(config) and not _schemes(config) & {"tcp", "tls"}:
        name = config.named("send_proxy")
        found.errors.append(
            f"{name}: only TCP listeners send a PROXY header, and every listener here is HTTP, so backends "
            f"expecting one would never get it (add --bind tcp://ADDR:PORT, or drop {name})"
        )


def _http_check(config: Config, found: Review) -> None:
    if config.http_check and not config.health_check.enabled:
        found.warnings.append(
            f"{config.named('http_check')}: health checks are off ({config.named('health_check')} none), "
            "so no HTTP check is sent (drop one of them)"
        )


def _observability(config: Config, found: Review) -> None:
    if config.stats_auth is not None and config.stats_port is None:
        found.warnings.append(
            f"{config.named('stats_auth')}: there is no stats port to protect (set STATS_PORT or --stats-port)"
        )
    if config.monitor_port is not None and config.monitor_uri is None:
        found.warnings.append(
            f"{config.named('monitor_port')}: no MONITOR_URI to answer there (set MONITOR_URI, e.g. /ping)"
        )
    http = _schemes(config) & set(HTTP_SCHEMES)
    if config.monitor_uri is not None and not http and config.monitor_port is None:
        found.warnings.append(
            f"{config.named('monitor_uri')}: every listener is TCP, where no path is read "
            "(add --bind http://ADDR:PORT or MONITOR_PORT)"
        )
    if config.access_log_format == "combined" and not http:
        found.warnings.append(
            f"{config.named('log_format')} combined: it writes HTTP requests only, and every listener is TCP "
            "(use haproxy or json)"
        )


_RULES = (_certificates, _force_ssl, _hsts, _routes, _send_proxy, _http_check, _observability)


# The part of docs/configuration.md about these rules (generated with the rest of the page).
_PROSE = """
## Settings that cannot take effect

pylb looks at the settings together before it starts (and `pylb --check` does the same). When one
setting would have to be served against, the configuration contradicts itself: pylb stops with one
line naming the settings as you gave them (flag or variable) and the fix, and exit code 2. When a
setting merely does nothing, pylb starts and says so in one warning line.

The rule: **an error** when pylb would serve traffic other than the setting promises, so that a
user relying on it would be misled (a redirect to a port where nothing listens, routes that no
request can reach, a PROXY header the backends wait for and never get, an https listener without a
certificate); **a warning** when the traffic is exactly what it would be without the setting, so
dropping it changes nothing (a header for responses that are never sent, a certificate no listener
serves, a check that is off anyway).
"""


_TABLE = (  # settings, verdict, why: the rows of docs/configuration.md's table
    (
        "an `https://` or `tls://` listener and no certificate",
        "error",
        "the listener could not complete a handshake; when `CERT_FOLDER` is the only source and holds no "
        "`*.pem` file, the error names the folder, where the fix is",
    ),
    (
        "`CERT_FOLDER` with no `*.pem` file, other certificates or no TLS listener",
        "warning",
        "the folder adds nothing; the other sources serve as they would without it",
    ),
    (
        "`SSL_CERT`, `DEFAULT_SSL_CERT`, `--ssl-cert` or `CERT_FOLDER` with no `https://` or `tls://` listener",
        "warning",
        "the certificate is loaded and served to nobody (with discovery, only containers' `TCP_PORTS` "
        "`/ssl` ports could use it); add `--bind https://ADDR:PORT`",
    ),
    (
        "`FORCE_SSL` with no `https://` listener (`MODE=tcp` included)",
        "error",
        "every plain-HTTP request would be redirected to a port where nothing listens: the site would be "
        "unreachable, not secured",
    ),
    (
        "`FORCE_SSL` with no plain-HTTP listener",
        "warning",
        "there is nothing to redirect: every listener is https already",
    ),
    (
        "`HSTS_MAX_AGE` with no `https://` listener",
        "warning",
        "the header goes on https responses only, and there are none",
    ),
    (
        "`--route`/`ROUTES` with no `http://` or `https://` listener (`MODE=tcp`)",
        "error",
        "routes choose by Host and path; TCP listeners see neither, so the routed services would get no request at all",
    ),
    (
        "`--send-proxy` with only HTTP listeners and static backends",
        "error",
        "only TCP listeners send a PROXY header; backends configured to expect one would refuse every "
        "connection (with discovery, containers' `TCP_PORTS` listeners do send it, so nothing is said)",
    ),
    (
        "`HTTP_CHECK` with `HEALTH_CHECK none`",
        "warning",
        "checks are off, so no HTTP check is sent; `none` says what happens, the HTTP check only has no effect",
    ),
    (
        "`STATS_AUTH` without `STATS_PORT`",
        "warning",
        "there is no stats port for it to protect",
    ),
    (
        "`MONITOR_PORT` without `MONITOR_URI`; `MONITOR_URI` with only TCP listeners",
        "warning",
        "there is no path to answer there: TCP listeners read no request",
    ),
    (
        "`LOG_FORMAT=combined` with only TCP listeners",
        "warning",
        "the combined format has no line for a TCP connection, so it would write nothing (haproxy and json do)",
    ),
)

REFERENCE = (
    _PROSE
    + "\n| settings | verdict | why |\n| --- | --- | --- |\n"
    + "".join(f"| {settings} | {verdict} | {why} |\n" for settings, verdict, why in _TABLE)
)
