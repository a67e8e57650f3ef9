"""Virtual-host routing: which service takes an HTTP request, by Host and path.

Owns: the route syntax (``VIRTUAL_HOST``, ``--route``, ``ROUTES``), what a
valid Host header is, and ``RouteTable``, the matcher precomputed from a
snapshot's routes that the data plane asks once per request.
Must not know: sockets, trio, backends' health, or what the caller does when
no route matches (the default service, else a 503).

Precedence: of the routes that match a request, the first by
1. an exact host name before any wildcard (``a.test`` before ``*.test``);
2. among wildcards, the longer literal part first (``*.b.a.test``, then
   ``*.a.test``, then ``*``);
3. the longer path: literal characters before the first ``*``, then all
   literal characters (``/api/v1``, then ``/api``, then ``/``);
4. the higher priority (``VIRTUAL_HOST_WEIGHT``);
5. a route restricted to a scheme or a port before one that is not;
6. the route's own fields (host, path, service, ...), so the order is total:
   the winner never depends on the order routes were given, and adding a
   route never changes the winner of a request that route does not match.

Hosts. A route host is a DNS name (labels of letters, digits, ``-``, ``_``),
an IPv4 address, ``[IPv6]``, or a glob where ``*`` is one whole label at the
start (``*.a.test``: one or more labels, so not ``a.test`` itself), at the end
(``a.*``), or the whole host (``*``: every request, even one without Host).
``a*b.test``, ``a.*.test`` and ``*.a.*`` are errors. Hosts compare
case-insensitively, and one trailing dot is dropped (``a.test.`` is
``a.test``). The Host header's port never takes part in matching: behind a
port mapping (``-p 8080:80``) clients send ``a.test:8080`` to a listener on
80. A route's port (``a.test:8080``) restricts the *listener* port and its
scheme the listener scheme (``ws`` means http, ``wss`` https). A Host value
that is not an RFC 3986 reg-name, IPv4 or ``[IPv6]`` (no zone, no IPvFuture)
with an optional port of at most 5 digits and up to 65535 is a 400.

Paths compare case-sensitively, byte for byte (no percent-decoding, no
dot-segment removal: routing is not access control); the query is ignored.
- Without ``*``, a path is a prefix ending at a segment boundary: ``/api``
  matches ``/api``, ``/api/`` and ``/api/x``, not ``/apix``. A trailing ``/``
  changes nothing and ``/`` matches every request.
- A final ``/*`` means the same: ``/api/*`` is ``/api``; ``/v*/users/*``
  matches ``/v1/users`` and ``/v1/users/5``.
- Any other ``*`` makes a glob over the whole path, ``*`` matching any run of
  characters including ``/``: ``/static/*.css`` matches ``/static/a/b.css``,
  not ``/static/a.css.map``; ``/api*`` matches ``/apix``.

Invariants: a RouteTable never changes after construction and ``resolve`` is
a pure function of its arguments.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable

from pylb.core.errors import BadRequest, ConfigError
from pylb.core.models import Backend, Route

SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_NAME_CACHE = 4096
DEFAULT_PORTS = {"http": 80, "https": 443}

RouteSpec = tuple[tuple[Route, ...], tuple[Backend, ...]]

_EXACT, _SUFFIX, _PREFIX, _ANY = range(4)
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_AUTHORITY_RE = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::(.*))?", re.S)
_PATH_RE = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
# A reg-name's characters; a "%" must then start a pct-encoding (checked apart: rare, and one
# character class is much faster than an alternation per byte).
_HOST_RE = re.compile(rb"(?:([A-Za-z0-9\-._~!$&'()*+,;=%]*)|\[([0-9A-Fa-f:.]+)\])(?::([0-9]{0,5}))?")
_PCT_RE = re.compile(rb"(?:[^%]|%[0-9A-Fa-f]{2})*")
_STAR_HINT = "* must be a whole label at the start (*.a.test) or the end (a.*), or the whole host (*)"


def parse_virtual_host(text: str, service: str, priority: int = 0, what: str = "VIRTUAL_HOST") -> tuple[Route, ...]:
    """Parse ``[scheme://]host[:port][/path][, ...]`` into routes to ``service``.

    Raises ConfigError (one line naming ``what``, the bad entry and the fix).
    """
    if not text.strip():
        raise ConfigError(f"{what}: empty value (example: a.test,https://b.test/api/*)")
    routes = (_parse_entry(entry.strip(), text, service, priority, what) for entry in text.split(","))
    return tuple(dict.fromkeys(routes))


def parse_route_flag(text: str, what: str = "--route") -> RouteSpec:
    """Parse ``HOST[/PATH]=ADDR:PORT[,weight=N][,ADDR:PORT...]``.

    The left side takes the ``VIRTUAL_HOST`` syntax (several hosts separated by
    commas too). The routes go to a service named after it (``route:a.test/api``):
    two flags with the same left side name the same service."""
    hosts, sep, targets = text.partition("=")
    if not sep or not hosts.strip() or not targets.strip():
        raise ConfigError(
            f"{what}: {text!r} is not HOST[/PATH]=ADDR:PORT[,ADDR:PORT...] (example: a.test/api=10.0.0.5:80)"
        )
    routes = parse_virtual_host(hosts, "", what=what)
    service = "route:" + ",".join(_route_label(route) for route in routes)
    routes = tuple(dataclasses.replace(route, service=service) for route in routes)
    return routes, _parse_backends(targets, text, what)


def parse_routes_env(text: str, what: str = "ROUTES") -> tuple[RouteSpec, ...]:
    """Parse ``ROUTES``: ``--route`` values separated by ``;`` (blank: none)."""
    if not text.strip():
        return ()
    entries = [entry.strip() for entry in text.split(";")]
    if not all(entries):
        raise ConfigError(f"{what}: empty entry in {text!r} (separate routes with single semicolons)")
    return tuple(parse_route_flag(entry, what) for entry in entries)


def normalize_host(raw: bytes, scheme: str) -> str | None:
    """The canonical form of a Host value, or None when it is invalid (a 400).

    Lowercase, one trailing dot dropped, IPv6 compressed, the port dropped when
    empty or the scheme's default (RFC 3986 6.2.3). Other ports stay: they are
    what the client dialled, whatever port the listener has."""
    parsed = _parse_host(raw)
    if parsed is None:
        return None
    name, port = parsed[0].decode("ascii"), parsed[1]
    return name if port is None or port == DEFAULT_PORTS.get(scheme) else f"{name}:{port}"


class RouteTable:
    """The routes of one snapshot, compiled for ``resolve``.

    Exact hosts sit in a dict, each with its routes in precedence order;
    wildcard routes form one short list in precedence order. Raises
    ConfigError for a route that ``parse_virtual_host`` would not produce."""

    __slots__ = ("_entries", "_exact", "_names", "_wild")

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        entries = sorted((_Entry(route) for route in dict.fromkeys(routes)), key=lambda e: e.key)
        exact: dict[bytes, list[_Entry]] = {}
        for entry in entries:
            if entry.kind == _EXACT:
                exact.setdefault(entry.literal, []).append(entry)
        self._entries = tuple(entries)
        self._exact = {name: tuple(group) for name, group in exact.items()}
        self._wild = tuple(e for e in entries if e.kind != _EXACT)
        self._names: dict[bytes, bytes] = {}  # Host values seen -> their checked, normalized name

    @property
    def routes(self) -> tuple[Route, ...]:
        """All routes, in precedence order."""
        return tuple(entry.route for entry in self._entries)

    def resolve(self, host: bytes | None, path: bytes, scheme: str, port: int) -> str | None:
        """The service for a request, or None when no route matches.

        ``host`` is the raw Host value (None: absent), ``path`` the origin-form
        request target (a target that is not, like ``*``, matches only routes
        for ``/``), ``scheme`` and ``port`` the listener's. Raises BadRequest
        (400) for an invalid Host value."""
        entry = self._find(host, path, scheme, port)
        return None if entry is None else entry.route.service

    def match(self, host: bytes | None, path: bytes, scheme: str, port: int) -> Route | None:
        """Like ``resolve``, but the winning route itself."""
        entry = self._find(host, path, scheme, port)
        return None if entry is None else entry.route

    def _find(self, host: bytes | None, path: bytes, scheme: str, port: int) -> _Entry | None:
        query = path.find(b"?")
        if query >= 0:
            path = path[:query]
        name = None
        if host is not None:
            # Clients send the same few Host values again and again: check
            # and normalize each once (invalid ones raise, and are not kept).
            name = self._names.get(host)
            if name is None:
                name = _request_name(host)
                if len(self._names) < _NAME_CACHE:
                    self._names[host] = name
            group = self._exact.get(name, ())
            for entry in group:
                if entry.accepts(path, scheme, port):
                    return entry
        for entry in self._wild:
            if entry.host_matches(name) and entry.accepts(path, scheme, port):
                return entry
        return None

    def statistics(self) -> dict[str, object]:
        return {
            "routes": len(self._entries),
            "exact_hosts": len(self._exact),
            "exact_routes": len(self._entries) - len(self._wild),
            "wildcard_routes": len(self._wild),
            "path_globs": sum(1 for entry in self._entries if entry.glob is not None),
        }

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<RouteTable routes={len(self._entries)} exact_hosts={len(self._exact)} wildcards={len(self._wild)}>"


class _Entry:
    """One route compiled: host kind and literal, listener limits, path test."""

    __slots__ = ("glob", "key", "kind", "literal", "port", "prefix", "route", "scheme")

    def __init__(self, route: Route) -> None:
        where = f"{route.host}{route.path}"
        host = _check_host(route.host, where, "route")
        self.route = route
        self.kind, self.literal = _host_pattern(host)
        self.scheme = _route_scheme(route.scheme, where)
        self.port = None if route.port is None else _route_port(str(route.port), where, "route")
        path = _check_path(route.path or "/", where, "route")
        self.prefix, self.glob, head, literal = _compile_path(path)
        restricted = (self.scheme is not None) + (self.port is not None)
        # An exact host's name (position 3) only groups the listing: one request meets one exact host.
        exact = self.literal if self.kind == _EXACT else b""
        specificity = (self.kind != _EXACT, -len(self.literal), exact, -head, -literal, -route.priority, -restricted)
        self.key = (*specificity, route.host, route.path, route.service, route.scheme or "", route.port or 0)

    def host_matches(self, name: bytes | None) -> bool:
        if self.kind == _ANY:
            return True
        if name is None or len(name) <= len(self.literal):
            return False
        return name.endswith(self.literal) if self.kind == _SUFFIX else name.startswith(self.literal)

    def accepts(self, path: bytes, scheme: str, port: int) -> bool:
        if (self.scheme is not None and self.scheme != scheme) or (self.port is not None and self.port != port):
            return False
        if self.glob is not None:
            return self.glob.fullmatch(path) is not None
        prefix = self.prefix
        return not prefix or (path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in (b"", b"/"))


def _parse_entry(entry: str, text: str, service: str, priority: int, what: str) -> Route:
    if not entry:
        raise ConfigError(f"{what}: empty entry in {text!r} (separate hosts with single commas: a.test,b.test)")
    scheme, sep, rest = entry.partition("://")
    if not sep:
        scheme, rest = "", entry
    elif scheme.lower() not in SCHEMES:
        raise ConfigError(f"{what}: unknown scheme {scheme!r} in {entry!r} (use http, https, ws or wss)")
    authority, slash, path = rest.partition("/")
    match = _AUTHORITY_RE.fullmatch(authority)
    if match is None:
        raise ConfigError(f"{what}: {entry!r} is not [scheme://]host[:port][/path] (example: https://a.test:8443/api)")
    host = _check_host(match[1], entry, what)
    port = None if match[2] is None else _route_port(match[2], entry, what)
    path = _check_path(slash + path or "/", entry, what)
    return Route(host, path, service, priority, SCHEMES.get(scheme.lower()), port)


def _check_host(host: str, entry: str, what: str) -> str:
    """The canonical route host (lowercase, no trailing dot), or ConfigError."""
    if host.startswith("["):
        return _check_ipv6(host, entry, what)
    name = host.lower()
    name = name[:-1] if name.endswith(".") and len(name) > 1 else name
    if not name:
        raise ConfigError(f"{what}: {entry!r} has no host (use * for any host, [...] around an IPv6 address)")
    labels = name.split(".")
    stars = [i for i, label in enumerate(labels) if "*" in label]
    if stars and (len(stars) > 1 or labels[stars[0]] != "*" or stars[0] not in (0, len(labels) - 1)):
        raise ConfigError(f"{what}: host {host!r} in {entry!r} puts * in the wrong place ({_STAR_HINT})")
    if len(name) > 253 or not all(label == "*" or _LABEL_RE.fullmatch(label) for label in labels):
        raise ConfigError(
            f"{what}: host {host!r} in {entry!r} is not a valid host name (labels of letters, digits, '-' and '_',"
            " 1 to 63 characters, not starting or ending with '-', separated by single dots)"
        )
    return name


def _check_ipv6(host: str, entry: str, what: str) -> str:
    text = host[1:-1] if host.endswith("]") else ""
    try:
        address = ipaddress.IPv6Address(text) if "%" not in text else None
    except ValueError:
        address = None
    if address is None:
        raise ConfigError(f"{what}: {host!r} in {entry!r} is not an IPv6 address in brackets (example: [::1])")
    return f"[{address.compressed}]"


def _route_port(text: str, entry: str, what: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535):
        raise ConfigError(f"{what}: port {text!r} in {entry!r} is not a number from 1 to 65535")
    return int(text)


def _route_scheme(scheme: str | None, entry: str) -> str | None:
    if scheme is None:
        return None
    if scheme.lower() not in SCHEMES:
        raise ConfigError(f"route: unknown scheme {scheme!r} in {entry!r} (use http, https, ws or wss)")
    return SCHEMES[scheme.lower()]


def _check_path(path: str, entry: str, what: str) -> str:
    if not _PATH_RE.fullmatch(path):
        raise ConfigError(
            f"{what}: path {path!r} in {entry!r} is not a route path (start with /; no spaces, ?, #,"
            " non-ASCII or lone %; the query string is ignored anyway)"
        )
    return path


def _compile_path(path: str) -> tuple[bytes, re.Pattern[bytes] | None, int, int]:
    """(segment prefix, glob or None, literal length before the first *, all literal length)."""
    raw = path.encode("ascii")
    tail = raw.endswith(b"/*")
    body = raw[:-2] if tail else raw
    if b"*" not in body:
        prefix = body.rstrip(b"/")
        return prefix, None, len(prefix), len(prefix)
    pattern = b".*".join(re.escape(part) for part in body.split(b"*")) + (rb"(?:/.*)?" if tail else b"")
    return b"", re.compile(pattern, re.S), body.index(b"*"), len(body) - body.count(b"*")


def _host_pattern(host: str) -> tuple[int, bytes]:
    name = host.encode("ascii")
    if name == b"*":
        return _ANY, b""
    if name.startswith(b"*."):
        return _SUFFIX, name[1:]
    if name.endswith(b".*"):
        return _PREFIX, name[:-1]
    return _EXACT, name


def _route_label(route: Route) -> str:
    scheme = f"{route.scheme}://" if route.scheme else ""
    port = f":{route.port}" if route.port else ""
    return f"{scheme}{route.host}{port}{route.path if route.path != '/' else ''}"


def _parse_backends(targets: str, text: str, what: str) -> tuple[Backend, ...]:
    items: list[str] = []
    for item in (part.strip() for part in targets.split(",")):
        if not item:
            raise ConfigError(f"{what}: empty backend in {text!r} (separate backends with single commas)")
        if "=" in item and items:
            items[-1] += "," + item  # an option (weight=N) of the backend before it
        else:
            items.append(item)
    backends = tuple(Backend.parse(item, what) for item in items)
    keys = [backend.key for backend in backends]
    if len(keys) != len(set(keys)):
        raise ConfigError(f"{what}: a backend is listed twice in {text!r}")
    return backends


def _parse_host(raw: bytes) -> tuple[bytes, int | None] | None:
    match = _HOST_RE.fullmatch(raw)
    if match is None:
        return None
    name, ipv6, port = match.groups()
    if ipv6 is not None:
        name = _ipv6_name(ipv6)
    elif b"%" in name and not _PCT_RE.fullmatch(name):
        name = None  # a "%" that does not start a pct-encoding
    else:
        name = name.lower()
        name = name[:-1] if name.endswith(b".") else name
    if name is None or (port and int(port) > 65535):
        return None
    return name, int(port) if port else None


def _ipv6_name(text: bytes) -> bytes | None:
    try:
        return b"[" + ipaddress.IPv6Address(text.decode("ascii")).compressed.encode("ascii") + b"]"
    except ValueError:
        return None


def _request_name(host: bytes) -> bytes:
    parsed = _parse_host(host)
    if parsed is None:
        raise BadRequest(f"invalid Host header {host[:100].decode('latin-1')!r}")
    return parsed[0]
