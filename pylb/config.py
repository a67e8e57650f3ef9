"""One typed, frozen configuration, and the table of options it is built from.

Owns: every user-facing setting: its flag, its environment variable (the
dockercloud-haproxy name where one exists), its default and its parser.
The CLI and the configuration reference in the docs are generated from
``OPTIONS``, so they cannot drift. Precedence: flag, then env, then default.
Must not know: trio, sockets, or how settings are used.

Invalid input raises ConfigError with one line naming the input and the fix.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pylb.coherence import REFERENCE as COHERENCE_REFERENCE
from pylb.coherence import review
from pylb.core.errors import ConfigError
from pylb.core.health import HealthCheck
from pylb.core.models import (
    DEFAULT_SERVICE,
    Backend,
    Bind,
    PortSet,
    Route,
    Service,
    Snapshot,
    parse_balance,
)
from pylb.core.routing import RouteSpec, parse_route_flag
from pylb.core.timeouts import Timeouts, parse_duration
from pylb.net.settings import Settings
from pylb.tls import CertBundle, bundle_from_file, bundles_from_folder, parse_pem_bundle

MODES = ("http", "tcp")
DISCOVERY_MODES = ("docker", "swarm", "links", "auto", "none")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Config:
    """Everything pylb is told. ``binds`` empty means the defaults: port 80,
    and 443 as well when a certificate is configured (``listeners``)."""

    binds: tuple[Bind, ...] = ()
    backends: tuple[Backend, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    balance: str = "roundrobin"
    maxconn: int = 4096
    timeouts: Timeouts = field(default_factory=Timeouts)
    access_log: bool = False
    log_format: str = "off"
    log_level: str = "info"
    stats_port: Bind | None = None
    stats_auth: tuple[str, str] | None = field(default=None, repr=False)
    monitor_uri: str | None = None
    monitor_port: int | None = None
    grace: float = 10.0
    ssl_cert_files: tuple[CertBundle, ...] = ()
    default_ssl_cert: CertBundle | None = None
    ssl_cert: CertBundle | None = None
    cert_folder: tuple[CertBundle, ...] = ()
    force_ssl: bool = False
    hsts_max_age: int = 0
    discover: str | None = None
    network: str | None = None
    use_published_ports: bool = False
    expose_all: bool = False
    swarm_poll: float = 2.0
    mode: str = "http"
    send_proxy: str | None = None
    accept_proxy: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    tcp_drain: float = 30.0
    tcp_ports: PortSet = field(default_factory=PortSet)
    workers: int = 1
    health_check: HealthCheck = field(default_factory=HealthCheck)
    http_check: str = ""
    retries: int = 3
    lanes: bool = True
    # How the user gave each setting: option dest -> the flag or variable (a folder's path after
    # CERT_FOLDER's), so that messages name what was typed. Set by ``from_sources``.
    origins: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    def origin(self, dest: str) -> str | None:
        """The flag or variable that set ``dest``, or None (the default, or code)."""
        return next((label for name, label in self.origins if name == dest), None)

    def named(self, dest: str) -> str:
        """``dest`` as the user gave it, else its flag (else its variable)."""
        label = self.origin(dest)
        if label is not None:
            return label
        option = next(o for o in OPTIONS if o.dest == dest)
        return option.flag or option.env or dest

    @property
    def health(self) -> HealthCheck:
        """The active checks: HEALTH_CHECK's timing, HTTP_CHECK's request."""
        return self.health_check.with_http(self.http_check) if self.http_check else self.health_check

    @property
    def certificates(self) -> tuple[CertBundle, ...]:
        """Every configured certificate, the default (the one a client that
        sends no matching name gets) first: --ssl-cert files, then
        DEFAULT_SSL_CERT, SSL_CERT, then CERT_FOLDER's files."""
        seen: dict[str, CertBundle] = {}
        for bundle in (*self.ssl_cert_files, self.default_ssl_cert, self.ssl_cert, *self.cert_folder):
            if bundle is not None:
                seen.setdefault(bundle.fingerprint, bundle)
        return tuple(seen.values())

    @property
    def listeners(self) -> tuple[Bind, ...]:
        """The listeners to open: ``binds`` (a bind without a scheme is TCP
        under MODE=tcp), else port 80 and, with a certificate, 443."""
        if self.binds:
            if self.mode != "tcp":
                return self._with_monitor(self.binds)
            return self._with_monitor(tuple(Bind("tcp", b.host, b.port) if b.implicit else b for b in self.binds))
        plain = "tcp" if self.mode == "tcp" else "http"
        first = Bind(plain, "0.0.0.0", 80)
        if not self.certificates:
            return self._with_monitor((first,))
        return self._with_monitor((first, Bind("tls" if self.mode == "tcp" else "https", "0.0.0.0", 443)))

    def _with_monitor(self, binds: tuple[Bind, ...]) -> tuple[Bind, ...]:
        """MONITOR_PORT opens a plain-HTTP listener there when none listens there already."""
        port = self.monitor_port
        if port is None or self.monitor_uri is None or any(b.port == port for b in binds):
            return binds
        return (*binds, Bind("http", "0.0.0.0", port))

    @property
    def access_log_format(self) -> str:
        """LOG_FORMAT, or haproxy when only the older --access-log true asked for a log."""
        if self.log_format == "off" and self.access_log and self.origin("log_format") is None:
            return "haproxy"
        return self.log_format

    def snapshot(self) -> Snapshot | None:
        """The world as the flags describe it: ``--backend``s form the default
        service, each ``--route`` a service of its own (routes with the same
        left side share one). None when nothing is configured (discovery
        will provide)."""
        services: dict[str, list[Backend]] = {}
        routes: list[Route] = []
        for spec_routes, backends in self.routes:
            name = spec_routes[0].service
            services.setdefault(name, [])
            services[name] += [b for b in backends if b.key not in {x.key for x in services[name]}]
            routes += [r for r in spec_routes if r not in routes]
        if not self.backends and not services:
            return None
        default = (Service(DEFAULT_SERVICE, self.backends, self.balance),) if self.backends else ()
        routed = tuple(Service(name, tuple(b), self.balance) for name, b in services.items())
        return Snapshot((*default, *routed), DEFAULT_SERVICE if default else None, tuple(routes))

    def check(self) -> Config:
        """Raise ConfigError for settings that contradict each other (the
        first, in one line naming them and the fix; ``pylb.coherence``)."""
        errors = review(self).errors
        if errors:
            raise ConfigError(errors[0])
        return self

    def settings(self) -> Settings:
        """What the data plane runs with (``pylb.net.settings``)."""
        return Settings(
            listeners=self.listeners,
            certificates=self.certificates,
            snapshot=self.snapshot(),
            balance=self.balance,
            timeouts=self.timeouts,
            maxconn=self.maxconn,
            retries=self.retries,
            force_ssl=self.force_ssl,
            hsts_max_age=self.hsts_max_age,
            health=self.health,
            send_proxy=self.send_proxy,
            accept_proxy=self.accept_proxy,
            tcp_drain=self.tcp_drain,
            tcp_ports=self.tcp_ports,
            lanes=self.lanes,
            access_log=self.access_log_format,
            stats=self.stats_port,
            stats_auth=self.stats_auth,
            collect=self.stats_port is not None,
            monitor_uri=self.monitor_uri,
        )

    def warnings(self) -> list[str]:
        """One line for each setting that has no effect here (``pylb.coherence``)."""
        return review(self).warnings

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


def parse_discover(text: str, what: str) -> str:
    value = text.strip().lower()
    if value not in DISCOVERY_MODES:
        raise ConfigError(f"{what}: unknown mode {text!r} (use one of: {', '.join(DISCOVERY_MODES)})")
    return value


def _parse_poll(text: str, what: str) -> float:
    value = _parse_seconds(text, what)
    if not 0.1 <= value <= 3600:
        raise ConfigError(f"{what}: {text!r} must be from 0.1 to 3600 seconds (example: 2)")
    return value


def _parse_network(text: str, what: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", value):
        raise ConfigError(f"{what}: {text!r} is not a Docker network name or id (example: myapp_default)")
    return value


def _parse_http_check(text: str, what: str) -> str:
    HealthCheck().with_http(text, what)  # raises ConfigError for a bad value
    return text.strip()


def _parse_stats_port(text: str, what: str) -> Bind | None:
    """``1936`` (every address), ``ADDR:PORT``, or ``off``/``0`` (no stats port)."""
    value = text.strip()
    if value.lower() in ("off", "none", "0", ""):
        return None
    if "://" in value:
        raise ConfigError(f"{what}: {text!r} is a URL; give a port (1936) or ADDR:PORT (127.0.0.1:1936)")
    bind = Bind.parse(value, what)  # ADDR:0: a free port (the log line says which)
    return Bind("http", bind.host, bind.port)


def _parse_auth(text: str, what: str) -> tuple[str, str] | None:
    """``user:password`` (the password may hold colons). Never echoes the password."""
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise ConfigError(f"{what}: expected USER:PASSWORD, both non-empty (the value is not shown)")
    return user, password


def _parse_monitor_uri(text: str, what: str) -> str:
    value = text.strip()
    if not value.startswith("/") or any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        raise ConfigError(f"{what}: {text!r} must be a path starting with / (example: /ping)")
    return value


def _choice(text: str, what: str, choices: tuple[str, ...]) -> str:
    value = text.strip().lower()
    if value not in choices:
        raise ConfigError(f"{what}: {text!r} is not one of {', '.join(choices)}")
    return value


def _parse_networks(text: str, what: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{what}: {part!r} is not an address or CIDR range (example: 10.0.0.0/8)") from None
    return tuple(networks)


def _parse_seconds(text: str, what: str) -> float:
    """Seconds (``10``, ``2.5``) or a duration with a unit (``500ms``, ``1m``)."""
    text = text.strip()
    if re.fullmatch(r"[0-9]+\.[0-9]+", text):
        return float(text)
    return parse_duration(text if not text.isdigit() else text + "s", what)


@dataclass(frozen=True, slots=True)
class Option:
    """One setting. ``parse(text, what)`` turns user text into a value;
    ``repeat`` options take the flag many times, or a list in the env var."""

    dest: str
    flag: str | None
    env: str | None
    metavar: str
    help: str
    parse: Callable[[str, str], Any]
    example: str
    repeat: bool = False
    env_separator: str = " "
    separator: str = ""  # a list in one value (not repeat): what separates its items, for error messages


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
        "routes",
        "--route",
        "ROUTES",
        "HOST[/PATH]=ADDR:PORT[,ADDR:PORT...]",
        "Send requests for HOST (and PATH) to these backends; repeat for several. HOST takes VIRTUAL_HOST's "
        "syntax ([scheme://]host[:port][/path], * globs). The env var takes a ;-separated list.",
        parse_route_flag,
        "api.example.com/v1=10.0.0.7:8080",
        repeat=True,
        env_separator=";",
    ),
    Option(
        "balance",
        "--balance",
        "BALANCE",
        "ALGORITHM",
        "How to choose a backend: roundrobin (smooth, weighted), leastconn (fewest requests in flight) or source "
        "(the client's address picks the backend).",
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
        separator="commas",
    ),
    Option(
        "ssl_cert_files",
        "--ssl-cert",
        "PYLB_SSL_CERT_FILES",
        "FILE",
        "A PEM file holding a private key and its certificate chain; repeat for several (SNI picks).",
        bundle_from_file,
        "/run/secrets/site.pem",
        repeat=True,
    ),
    Option(
        "default_ssl_cert",
        None,
        "DEFAULT_SSL_CERT",
        "PEM",
        "The default certificate as PEM text (key and chain; newlines may be written as \\n). "
        "Wins over SSL_CERT as the default.",
        parse_pem_bundle,
        '"$(awk 1 ORS=\'\\\\n\' cert.pem)"',
    ),
    Option(
        "ssl_cert",
        None,
        "SSL_CERT",
        "PEM",
        "A certificate as PEM text (key and chain; newlines may be written as \\n), as tutum/haproxy took it.",
        parse_pem_bundle,
        '"$(awk 1 ORS=\'\\\\n\' cert.pem)"',
    ),
    Option(
        "cert_folder",
        "--cert-folder",
        "CERT_FOLDER",
        "DIR",
        "Every *.pem file in DIR is a certificate (key and chain).",
        lambda text, what: tuple(bundles_from_folder(text.strip(), what)),
        "/certs",
    ),
    Option(
        "force_ssl",
        "--force-ssl",
        "FORCE_SSL",
        "BOOL",
        "Redirect plain-HTTP requests to https (301 for GET and HEAD, 308 otherwise).",
        parse_bool,
        "true",
    ),
    Option(
        "hsts_max_age",
        "--hsts-max-age",
        "HSTS_MAX_AGE",
        "SECONDS",
        "Add Strict-Transport-Security: max-age=SECONDS to https responses (0: off).",
        _parse_int(0, 10 * 365 * 86400),
        "31536000",
    ),
    Option(
        "discover",
        "--discover",
        "PYLB_DISCOVER",
        "MODE",
        "Find backends by themselves: docker (engine events, labels and VIRTUAL_HOST; see docs/discovery.md), "
        "swarm (a swarm manager's services and tasks; see docs/swarm.md), links (legacy --link variables), "
        "auto (swarm when the engine is a swarm manager, docker when its socket answers, else links) or none. "
        "Off when --backend or --route are given.",
        parse_discover,
        "docker",
    ),
    Option(
        "network",
        "--network",
        "PYLB_NETWORK",
        "NAME",
        "Docker and Swarm discovery: reach containers (tasks) by their IP on this network (default: a network "
        "shared with pylb's container, else the container's first network).",
        _parse_network,
        "myapp_default",
    ),
    Option(
        "use_published_ports",
        "--use-published-ports",
        "PYLB_USE_PUBLISHED_PORTS",
        "BOOL",
        "Docker discovery with pylb outside any container: reach containers by their published host port "
        "(-p) instead of their IP.",
        parse_bool,
        "true",
    ),
    Option(
        "expose_all",
        "--expose-all",
        "PYLB_EXPOSE_ALL",
        "BOOL",
        "Docker discovery: take every running container with exactly one exposed port, labelled or not "
        "(opt out with the label pylb.enable=false).",
        parse_bool,
        "true",
    ),
    Option(
        "swarm_poll",
        "--swarm-poll",
        "PYLB_SWARM_POLL",
        "SECONDS",
        "Swarm discovery: list the tasks this often besides on events (tasks have no events of their own).",
        _parse_poll,
        "1",
    ),
    Option(
        "lanes",
        "--lanes",
        "PYLB_LANES",
        "BOOL",
        "Serve plain HTTP keep-alive exchanges and small TCP relays in one readiness loop (the fast lanes: "
        "fewer CPU cycles per request); false gives every connection a task of its own, as before them.",
        parse_bool,
        "false",
    ),
    Option(
        "log_format",
        "--log-format",
        "LOG_FORMAT",
        "FORMAT",
        "The access log on standard output, one line per request (per connection in TCP mode): haproxy "
        "(HAProxy's httplog layout, tcplog for TCP), combined (Apache's; HTTP only), json, or off. The image sets "
        "haproxy; see docs/observability.md.",
        lambda text, what: _choice(text, what, ("haproxy", "combined", "json", "off")),
        "haproxy",
    ),
    Option(
        "access_log",
        "--access-log",
        "PYLB_ACCESS_LOG",
        "BOOL",
        "true: an access log in LOG_FORMAT's haproxy layout, when LOG_FORMAT is not given (kept from before "
        "LOG_FORMAT).",
        parse_bool,
        "true",
    ),
    Option(
        "log_level",
        "--log-level",
        "LOG_LEVEL",
        "LEVEL",
        "The least important log lines shown on standard error: debug, info, warning or error.",
        lambda text, what: _choice(text, what, ("debug", "info", "warning", "error")),
        "warning",
    ),
    Option(
        "stats_port",
        "--stats-port",
        "STATS_PORT",
        "[ADDR:]PORT",
        "Serve the live stats page (/), /stats.json and Prometheus /metrics on this port (every address unless "
        "ADDR is given); off: none. The image sets 1936, as dockercloud-haproxy did.",
        _parse_stats_port,
        "1936",
    ),
    Option(
        "stats_auth",
        "--stats-auth",
        "STATS_AUTH",
        "USER:PASSWORD",
        "Basic authentication for the stats port (never logged). Without it the stats port is open to whoever "
        "reaches it.",
        _parse_auth,
        "admin:s3cret",
    ),
    Option(
        "monitor_uri",
        "--monitor-uri",
        "MONITOR_URI",
        "PATH",
        "pylb answers this path itself on every HTTP listener: 200 while it serves, 503 while it drains or no "
        "backend of the default service is up (HAProxy's monitor-uri); pylb healthcheck asks it.",
        _parse_monitor_uri,
        "/ping",
    ),
    Option(
        "monitor_port",
        "--monitor-port",
        "MONITOR_PORT",
        "PORT",
        "Also listen (plain HTTP) on this port, where MONITOR_URI is answered as on every HTTP listener.",
        _parse_int(1, 65535),
        "8080",
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
    Option(
        "mode",
        "--mode",
        "MODE",
        "http|tcp",
        "tcp: the default listeners, and every --bind without a scheme, forward raw TCP (balanced per connection).",
        lambda text, what: _choice(text, what, MODES),
        "tcp",
    ),
    Option(
        "send_proxy",
        "--send-proxy",
        "PYLB_SEND_PROXY",
        "v1|v2",
        "TCP listeners: send HAProxy's PROXY protocol header to backends, naming the client.",
        lambda text, what: _choice(text, what, ("v1", "v2")),
        "v2",
    ),
    Option(
        "accept_proxy",
        "--accept-proxy",
        "PYLB_ACCEPT_PROXY",
        "CIDR[,CIDR...]",
        "Read a PROXY protocol header (v1 or v2) on connections from these sources (another balancer in front); "
        "the client it names is the one pylb sees.",
        _parse_networks,
        "10.0.0.0/8",
        separator="commas",
    ),
    Option(
        "tcp_drain",
        "--tcp-drain",
        "PYLB_TCP_DRAIN",
        "SECONDS",
        "TCP connections to a backend that left the pool are closed after this long.",
        _parse_seconds,
        "30",
    ),
    Option(
        "tcp_ports",
        "--tcp-ports",
        "PYLB_TCP_PORTS",
        "PORTS",
        "The ports containers may have pylb listen on, with TCP_PORTS or the label pylb.tcp: ports and ranges, "
        "all, or none. Ports below 1024 only when listed.",
        PortSet.parse,
        "5432,7000-7099",
        separator="commas",
    ),
    Option(
        "workers",
        "--workers",
        "PYLB_WORKERS",
        "N",
        "Worker processes sharing the listening ports (SO_REUSEPORT); discovery runs once and every worker gets "
        "its snapshots. Default: the number of cores (1 when embedded).",
        _parse_int(1, 256),
        "4",
    ),
    Option(
        "health_check",
        "--health-check",
        "HEALTH_CHECK",
        "SPEC",
        "Active health checks in HAProxy's server-option form (milliseconds unless suffixed); none turns them off. "
        "A backend is down after fall failures in a row, up again after rise successes.",
        HealthCheck.parse,
        "check inter 2000 rise 2 fall 3",
    ),
    Option(
        "http_check",
        "--http-check",
        "HTTP_CHECK",
        "'METHOD PATH'",
        "Check backends with this HTTP request (a 2xx or 3xx answer is healthy) instead of a TCP connect; one "
        "argument, so quote it: --http-check 'GET /health'.",
        _parse_http_check,
        "GET /health",
    ),
    Option(
        "retries",
        "--retries",
        "PYLB_RETRIES",
        "N",
        "Other backends tried when connecting to one fails (nothing was sent yet; HAProxy's redispatch), "
        "or when a new connection closes unanswered after a bodiless GET, HEAD, DELETE... (nothing to replay).",
        _parse_int(0, 100),
        "3",
    ),
)


def defaults() -> dict[str, Any]:
    return {name: getattr(Config(), name) for name in Config.__dataclass_fields__ if name != "origins"}


def from_sources(given: Mapping[str, Sequence[str] | str | None], env: Mapping[str, str] | None = None) -> Config:
    """Build the Config: ``given`` maps option dests to what the flags said
    (None when absent); ``env`` defaults to os.environ."""
    env = os.environ if env is None else env
    values = defaults()
    origins: list[tuple[str, str]] = []
    for option in OPTIONS:
        raw = given.get(option.dest)
        if raw is not None and option.flag is not None:
            what = option.flag
        elif option.env is not None and env.get(option.env, "").strip():
            what, raw = option.env, env[option.env]
            if option.repeat:
                raw = raw.replace(";", option.env_separator).split(option.env_separator)
                raw = [part for part in raw if part.strip()]
        else:
            continue
        try:
            if option.repeat:
                assert not isinstance(raw, str)
                values[option.dest] = tuple(option.parse(item, what) for item in raw)
            else:
                assert isinstance(raw, str)
                values[option.dest] = option.parse(raw, what)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{_list_hint(option, what, raw)}") from None
        label = f"{what} {raw.strip()}" if option.dest == "cert_folder" and isinstance(raw, str) else what
        origins.append((option.dest, label))
    return Config(**values, origins=tuple(origins)).check()


def _list_hint(option: Option, what: str, raw: Sequence[str] | str) -> str:
    """For a value that is a list: what separates its items, to add to an
    error about it (a comma where a space belongs is the usual mistake)."""
    text = raw if isinstance(raw, str) else " ".join(raw)
    if option.separator:
        return f"; {what} is a list separated by {option.separator}"
    if not option.repeat:
        return ""
    commas = re.search(r",\s*[^=,\s]*:", text) is not None  # a comma before another HOST:PORT
    if what != option.env:
        return f"; one per {what}: repeat {what} for several" if commas or ";" in text else ""
    if option.env_separator == " ":
        return f"; {what} is a list separated by spaces or ;" + (", not commas" if commas else "")
    return f"; {what} is a list separated by {option.env_separator}" + (", not spaces" if " " in text else "")


_ENVIRONMENT = """
## Checking a configuration: `pylb --check`

`pylb --check`, with the flags and environment you would run with, reads and checks everything a
start would (every value, the certificates, the settings together, the discovery mode), prints one
line saying what would run and exits 0; a problem is the one line `pylb` itself would print, and exit
code 2, as `haproxy -c` does. It opens no port, probes no Docker daemon and contacts no backend, so
it also checks a configuration meant for another machine:

```console
$ pylb --check --workers 2 --bind 0.0.0.0:8080 --backend 10.0.0.5:80 --backend 10.0.0.6:80,weight=2
pylb --check: ok: would listen on http://0.0.0.0:8080 (from this machine: http://127.0.0.1:8080); \
2 backends, 0 routes, roundrobin; 2 workers; static backends
```

## Environment variables

- Lists: `PYLB_BIND`, `PYLB_BACKENDS` and `PYLB_SSL_CERT_FILES` take items separated by spaces (or
  `;`), `ROUTES` by `;`; `PYLB_ACCEPT_PROXY`, `PYLB_TCP_PORTS` and `TIMEOUT` by commas. An error in
  one of them names its separator (`PYLB_BACKENDS=a:1,b:2` is told to use spaces).
- An address is `HOST:PORT`; a URL given instead (`--backend http://10.0.0.5:80`) is told to drop
  the scheme.
- A variable that looks meant for pylb but is not one of its names gets one warning naming it, never
  its value (it may be a secret): another case or an edit or two away from a name pylb reads (`BALANCER`,
  `PYLB_BACKEND`, `HEALTHCHECK`: with the name it probably meant), or any other `PYLB_` name.
  dockercloud-haproxy's variables that pylb does not take get a warning saying what to do instead
  ([migration](migration.md)). `PYLB_TEST_*`, `PYLB_FUZZ_EXAMPLES` and `PYLB_IMAGE_CACHE` belong to
  the project's own test suite and build script, and pass silently.
"""


def reference_markdown() -> str:
    """The configuration reference (docs/configuration.md), from ``OPTIONS``."""
    rows = [
        "# Configuration reference",
        "",
        "Generated from `pylb/config.py` and `pylb/coherence.py` by `scripts/gen-config-reference`; a test keeps",
        "this file equal to the code. Precedence: a flag, then its environment variable, then the default.",
        "",
        "| flag | env | default | example | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    base = defaults()
    for option in OPTIONS:
        default = base[option.dest]
        if option.dest == "binds":
            default = "http://0.0.0.0:80, and https://0.0.0.0:443 when a certificate is set"
        elif isinstance(default, tuple) or default is None:
            default = " ".join(str(d) for d in default or ()) or "(none)"
        elif default == "":
            default = "(none)"
        elif isinstance(default, PortSet):
            default = str(default)
        elif isinstance(default, HealthCheck):
            default = f"check inter {default.inter * 1000:g} rise {default.rise} fall {default.fall} (tcp connect)"
        elif hasattr(default, "__dataclass_fields__"):
            default = ", ".join(f"{k} {getattr(default, k):g}s" for k in default.__dataclass_fields__)
        flag = f"`{option.flag} {option.metavar}`" if option.flag else "(env only)"
        rows.append(
            f"| {flag} | `{option.env or '-'}` | {default} | `{option.example}` "
            f"| {option.help} |"
        )
    return "\n".join(rows) + "\n" + _ENVIRONMENT + COHERENCE_REFERENCE
