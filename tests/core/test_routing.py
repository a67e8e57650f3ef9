"""Routing: the route syntax, Host validation and RouteTable precedence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylb.core.errors import BadRequest, ConfigError
from pylb.core.models import Backend, Route
from pylb.core.routing import RouteTable, normalize_host, parse_route_flag, parse_routes_env, parse_virtual_host

# --- parse_virtual_host ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.test", [Route("a.test", "/", "s")]),
        ("http://a.test:8080/api/*", [Route("a.test", "/api/*", "s", scheme="http", port=8080)]),
        ("*.a.test", [Route("*.a.test", "/", "s")]),
        ("a.*", [Route("a.*", "/", "s")]),
        ("https://b.test", [Route("b.test", "/", "s", scheme="https")]),
        ("*/static/*", [Route("*", "/static/*", "s")]),
        ("a.test/api", [Route("a.test", "/api", "s")]),
        ("a.test/", [Route("a.test", "/", "s")]),
        ("ws://a.test", [Route("a.test", "/", "s", scheme="http")]),
        ("WSS://a.test", [Route("a.test", "/", "s", scheme="https")]),
        ("A.Test.", [Route("a.test", "/", "s")]),
        ("*", [Route("*", "/", "s")]),
        ("*:8443", [Route("*", "/", "s", port=8443)]),
        ("10.0.0.1/x", [Route("10.0.0.1", "/x", "s")]),
        ("[0:0::1]:8080", [Route("[::1]", "/", "s", port=8080)]),
        ("a_b-c.test/%41~b", [Route("a_b-c.test", "/%41~b", "s")]),
        (" a.test , b.test/x ", [Route("a.test", "/", "s"), Route("b.test", "/x", "s")]),
        ("a.test,A.TEST", [Route("a.test", "/", "s")]),
    ],
)
def test_parse_virtual_host(text: str, expected: list[Route]) -> None:
    assert parse_virtual_host(text, "s") == tuple(expected)


def test_parse_virtual_host_priority() -> None:
    assert parse_virtual_host("a.test", "s", priority=7) == (Route("a.test", "/", "s", 7),)


@pytest.mark.parametrize(
    ("text", "bad", "problem"),
    [
        ("", "", "empty value"),
        (" ", "", "empty value"),
        ("a.test,,b.test", "a.test,,b.test", "empty entry"),
        ("a.test,", "a.test,", "empty entry"),
        ("ftp://a.test", "ftp", "unknown scheme"),
        ("a.test:0", "0", "1 to 65535"),
        ("a.test:65536", "65536", "1 to 65535"),
        ("a.test:x", "x", "1 to 65535"),
        ("a.test:", "", "1 to 65535"),
        ("a.test:80:80", "80:80", "1 to 65535"),
        ("a b.test", "a b.test", "not a valid host name"),
        ("a!.test", "a!.test", "not a valid host name"),
        ("-a.test", "-a.test", "not a valid host name"),
        ("a..test", "a..test", "not a valid host name"),
        ("é.test", "é.test", "not a valid host name"),
        ("a" * 64 + ".test", "a" * 64 + ".test", "not a valid host name"),
        (".".join(["a" * 60] * 5), ".".join(["a" * 60] * 5), "not a valid host name"),
        ("a*b.test", "a*b.test", "wrong place"),
        ("*a.test", "*a.test", "wrong place"),
        ("a.*.test", "a.*.test", "wrong place"),
        ("*.a.*", "*.a.*", "wrong place"),
        ("/api", "/api", "no host"),
        ("http:///api", "http:///api", "no host"),
        ("::1", "::1", "no host"),
        ("a.test/a b", "/a b", "not a route path"),
        ("a.test/a?b=1", "/a?b=1", "not a route path"),
        ("a.test/a#b", "/a#b", "not a route path"),
        ("a.test/%zz", "/%zz", "not a route path"),
        ("[::g]", "[::g]", "not an IPv6 address"),
        ("[fe80::1%eth0]", "[fe80::1%eth0]", "not an IPv6 address"),
        ("[::1", "[::1", "is not [scheme://]host[:port][/path]"),
    ],
)
def test_parse_virtual_host_errors(text: str, bad: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_virtual_host(text, "s", what="VIRTUAL_HOST of web")
    message = str(caught.value)
    assert message.startswith("VIRTUAL_HOST of web: ")
    assert problem in message
    assert repr(bad) in message or not bad
    assert "\n" not in message


# --- --route and ROUTES ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "routes", "backends"),
    [
        ("a.test=10.0.0.1:80", [Route("a.test", "/", "route:a.test")], [Backend("10.0.0.1", 80)]),
        (
            "a.test/api=10.0.0.1:80,10.0.0.2:81",
            [Route("a.test", "/api", "route:a.test/api")],
            [Backend("10.0.0.1", 80), Backend("10.0.0.2", 81)],
        ),
        (
            "A.test=h1:80, weight=3 ,h2:80",
            [Route("a.test", "/", "route:a.test")],
            [Backend("h1", 80, 3), Backend("h2", 80)],
        ),
        (
            "wss://*.a.test:8443/x/*=h:1",
            [Route("*.a.test", "/x/*", "route:https://*.a.test:8443/x/*", scheme="https", port=8443)],
            [Backend("h", 1)],
        ),
        (
            "a.test,b.test/x=h:1",
            [Route("a.test", "/", "route:a.test,b.test/x"), Route("b.test", "/x", "route:a.test,b.test/x")],
            [Backend("h", 1)],
        ),
        ("a.test=[::1]:8080", [Route("a.test", "/", "route:a.test")], [Backend("::1", 8080)]),
    ],
)
def test_parse_route_flag(text: str, routes: list[Route], backends: list[Backend]) -> None:
    assert parse_route_flag(text) == (tuple(routes), tuple(backends))


@pytest.mark.parametrize(
    ("text", "bad", "problem"),
    [
        ("a.test", "a.test", "is not HOST[/PATH]=ADDR:PORT"),
        ("=h:1", "=h:1", "is not HOST[/PATH]=ADDR:PORT"),
        ("a.test=", "a.test=", "is not HOST[/PATH]=ADDR:PORT"),
        ("a.test=h:1,,h:2", "a.test=h:1,,h:2", "empty backend"),
        ("a.test=h:1,h:1", "a.test=h:1,h:1", "listed twice"),
        ("a.test=weight=2", "weight=2", "is not HOST:PORT"),
        ("a.test=h:1,weight=0", "0", "weight"),
        ("a.test=h:1,color=red", "color", "unknown option"),
        ("a.test=h:0", "h:0", "other than 0"),
        ("a b=h:1", "a b", "not a valid host name"),
        ("a*b=h:1", "a*b", "wrong place"),
    ],
)
def test_parse_route_flag_errors(text: str, bad: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_route_flag(text)
    message = str(caught.value)
    assert message.startswith("--route: ")
    assert problem in message
    assert repr(bad) in message


def test_parse_routes_env() -> None:
    assert parse_routes_env("") == ()
    assert parse_routes_env("  ") == ()
    assert parse_routes_env(" a.test=h:1 ; b.test/x=h:2,h:3 ") == (
        parse_route_flag("a.test=h:1"),
        parse_route_flag("b.test/x=h:2,h:3"),
    )


@pytest.mark.parametrize("text", ["a.test=h:1;;b.test=h:2", "a.test=h:1;", ";a.test=h:1"])
def test_parse_routes_env_empty_entry(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^ROUTES: empty entry in "):
        parse_routes_env(text)


def test_parse_routes_env_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^ROUTES: .*'a b'"):
        parse_routes_env("a.test=h:1;a b=h:2")


# --- normalize_host --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "scheme", "expected"),
    [
        (b"a.test", "http", "a.test"),
        (b"A.TeSt", "http", "a.test"),
        (b"a.test.", "http", "a.test"),
        (b"a.test.:80", "http", "a.test"),
        (b"a.test:80", "http", "a.test"),
        (b"a.test:443", "https", "a.test"),
        (b"a.test:443", "http", "a.test:443"),
        (b"a.test:80", "https", "a.test:80"),
        (b"a.test:8080", "http", "a.test:8080"),
        (b"a.test:", "http", "a.test"),
        (b"a.test:0080", "http", "a.test"),
        (b"10.0.0.1:80", "http", "10.0.0.1"),
        (b"[0:0::1]:8080", "http", "[::1]:8080"),
        (b"[::FFFF:1.2.3.4]", "https", "[::ffff:102:304]"),
        (b"a%2Db.test", "http", "a%2db.test"),
        (b"a_b~c.test", "http", "a_b~c.test"),
        (b"", "http", ""),
    ],
)
def test_normalize_host(raw: bytes, scheme: str, expected: str) -> None:
    assert normalize_host(raw, scheme) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"a test",
        b"a.test:99999",
        b"a.test:123456",
        b"a.test:8o",
        b"a.test:80:80",
        b"user@a.test",
        b"a.test/x",
        b"a%zz.test",
        b"a%2",
        b"a\xff.test",
        b"::1",
        b"[::1",
        b"[::g]",
        b"[fe80::1%25eth0]",
        b"[v1.x]",
        b"[1.2.3.4]",
    ],
)
def test_normalize_host_invalid(raw: bytes) -> None:
    assert normalize_host(raw, "http") is None
    with pytest.raises(BadRequest):
        RouteTable().resolve(raw, b"/", "http", 80)


# --- RouteTable.resolve ----------------------------------------------------------------------------------------

ROUTES = (
    Route("a.test", "/", "a-root"),
    Route("a.test", "/api", "a-api"),
    Route("a.test", "/api/v1/*", "a-v1"),
    Route("a.test", "/static/*.css", "a-css"),
    Route("*.a.test", "/", "star-a"),
    Route("*.b.a.test", "/", "star-b-a"),
    Route("a.*", "/", "a-star"),
    Route("x.*", "/", "x-star"),
    Route("*", "/wild/*", "any-wild"),
    Route("s.test", "/", "s-https", scheme="https"),
    Route("s.test", "/", "s-any"),
    Route("p.test", "/", "p-8080", port=8080),
    Route("prio.test", "/", "low", priority=1),
    Route("prio.test", "/", "high", priority=5),
    Route("prio.test", "/x", "longer-path", priority=0),
    Route("[::1]", "/", "v6"),
    Route("10.0.0.1", "/", "v4"),
)
TABLE = RouteTable(ROUTES)


@pytest.mark.parametrize(
    ("host", "path", "scheme", "port", "expected"),
    [
        # exact host, case-insensitive, trailing dot, default and other ports in Host
        (b"a.test", b"/", "http", 80, "a-root"),
        (b"A.TEST", b"/", "http", 80, "a-root"),
        (b"a.test.", b"/", "http", 80, "a-root"),
        (b"a.test:80", b"/", "http", 80, "a-root"),
        (b"a.test:443", b"/", "https", 443, "a-root"),
        (b"a.test:8080", b"/", "http", 80, "a-root"),
        # path prefixes at segment boundaries, longer first, case-sensitive, query ignored
        (b"a.test", b"/api", "http", 80, "a-api"),
        (b"a.test", b"/api/", "http", 80, "a-api"),
        (b"a.test", b"/api/x", "http", 80, "a-api"),
        (b"a.test", b"/api?x=/api/v1", "http", 80, "a-api"),
        (b"a.test", b"/apix", "http", 80, "a-root"),
        (b"a.test", b"/API", "http", 80, "a-root"),
        (b"a.test", b"/api/v1", "http", 80, "a-v1"),
        (b"a.test", b"/api/v1/users", "http", 80, "a-v1"),
        (b"a.test", b"/api/v10", "http", 80, "a-api"),
        (b"a.test", b"/static/x/y.css", "http", 80, "a-css"),
        (b"a.test", b"/static/y.css.map", "http", 80, "a-root"),
        (b"a.test", b"*", "http", 80, "a-root"),
        # wildcards: one or more labels, never the bare suffix, longer literal first
        (b"x.a.test", b"/", "http", 80, "star-a"),
        (b"x.y.a.test", b"/", "http", 80, "star-a"),
        (b"b.a.test", b"/", "http", 80, "star-a"),
        (b"x.b.a.test", b"/", "http", 80, "star-b-a"),
        (b"X.B.A.TEST.:8080", b"/", "http", 80, "star-b-a"),
        (b"a.other", b"/", "http", 80, "a-star"),
        (b"a", b"/", "http", 80, None),
        (b"x.a", b"/", "http", 80, "x-star"),
        (b"nomatch.test", b"/wild/x", "http", 80, "any-wild"),
        (b"nomatch.test", b"/wild", "http", 80, "any-wild"),
        (b"nomatch.test", b"/", "http", 80, None),
        (None, b"/wild/x", "http", 80, "any-wild"),
        (None, b"/", "http", 80, None),
        (b"", b"/wild", "http", 80, "any-wild"),
        # an exact host beats any wildcard, even one with a longer path
        (b"a.test", b"/wild/x", "http", 80, "a-root"),
        # scheme and port restrict the listener; the Host port does not count
        (b"s.test", b"/", "http", 80, "s-any"),
        (b"s.test", b"/", "https", 443, "s-https"),
        (b"p.test", b"/", "http", 8080, "p-8080"),
        (b"p.test", b"/", "https", 8080, "p-8080"),
        (b"p.test", b"/", "http", 80, None),
        (b"p.test:8080", b"/", "http", 80, None),
        # priority after path length
        (b"prio.test", b"/", "http", 80, "high"),
        (b"prio.test", b"/x", "http", 80, "longer-path"),
        # IP addresses
        (b"[::1]:80", b"/", "http", 80, "v6"),
        (b"[0::1]", b"/", "http", 80, "v6"),
        (b"10.0.0.1:8080", b"/", "http", 80, "v4"),
    ],
)
def test_resolve(host: bytes | None, path: bytes, scheme: str, port: int, expected: str | None) -> None:
    assert TABLE.resolve(host, path, scheme, port) == expected


@pytest.mark.parametrize(
    ("routes", "host", "expected"),
    [
        ([Route("r.test", "/", "plain"), Route("r.test", "/", "tls", scheme="https")], b"r.test", "tls"),
        ([Route("r.test", "/", "plain", 1), Route("r.test", "/", "tls", scheme="https")], b"r.test", "plain"),
        ([Route("r.test", "/", "plain"), Route("r.test", "/", "on-443", port=443)], b"r.test", "on-443"),
        ([Route("r.test", "/", "b"), Route("r.test", "/", "a")], b"r.test", "a"),
        ([Route("r.test", "/x", "prefix"), Route("r.test", "/x*", "glob")], b"r.test", "prefix"),
        ([Route("r.test", "/", "short"), Route("r.test", "/x/*/z", "glob")], b"r.test", "glob"),
        ([Route("r.test", "/x/y", "long", 0), Route("r.test", "/x", "short", 9)], b"r.test", "long"),
        ([Route("*.r.test", "/", "suffix"), Route("x.*", "/", "prefix")], b"x.r.test", "suffix"),
        ([Route("*", "/x/y", "any"), Route("*.test", "/", "suffix")], b"x.r.test", "suffix"),
        ([Route("*.test", "/x/y", "long"), Route("*.r.test", "/", "specific")], b"x.r.test", "specific"),
        ([Route("A.R.TEST.", "/", "upper", scheme="WSS")], b"a.r.test", "upper"),
    ],
)
def test_precedence(routes: list[Route], host: bytes, expected: str) -> None:
    assert RouteTable(routes).resolve(host, b"/x/y/z", "https", 443) == expected
    assert RouteTable(routes[::-1]).resolve(host, b"/x/y/z", "https", 443) == expected


def test_routes_are_listed_in_precedence_order() -> None:
    table = RouteTable(reversed(ROUTES))
    assert [r for r in table.routes if r.host == "a.test"] == [ROUTES[3], ROUTES[2], ROUTES[1], ROUTES[0]]
    assert [r.service for r in table.routes if r.host == "prio.test"] == ["longer-path", "high", "low"]
    assert [r.host for r in table.routes if "*" in r.host] == ["*.b.a.test", "*.a.test", "a.*", "x.*", "*"]


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        (Route("a b"), "not a valid host name"),
        (Route("a*b.test"), "wrong place"),
        (Route("a.test", "api"), "not a route path"),
        (Route("a.test", "/a b"), "not a route path"),
        (Route("a.test", scheme="ftp"), "unknown scheme"),
        (Route("a.test", port=0), "1 to 65535"),
        (Route("a.test", port=70000), "1 to 65535"),
    ],
)
def test_table_rejects_bad_routes(route: Route, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"^route: ") as caught:
        RouteTable([route])
    assert problem in str(caught.value)


def test_table_repr_statistics_len() -> None:
    assert repr(TABLE) == "<RouteTable routes=17 exact_hosts=6 wildcards=5>"
    assert TABLE.statistics() == {
        "routes": 17,
        "exact_hosts": 6,
        "exact_routes": 12,
        "wildcard_routes": 5,
        "path_globs": 1,
    }
    assert len(TABLE) == 17
    assert len(RouteTable(ROUTES + ROUTES)) == 17
    assert not RouteTable()
    assert repr(RouteTable()) == "<RouteTable routes=0 exact_hosts=0 wildcards=0>"


def test_match_returns_the_route() -> None:
    assert TABLE.match(b"a.test", b"/api/v1", "http", 80) == ROUTES[2]
    assert TABLE.match(b"nomatch.test", b"/", "http", 80) is None


# --- properties ------------------------------------------------------------------------------------------------

_names = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3).map(".".join)
_route_hosts = st.one_of(_names, _names.map("*.{}".format), _names.map("{}.*".format), st.just("*"))
_segments = st.lists(st.sampled_from(["x", "y", "xy"]), max_size=3).map(lambda parts: "/" + "/".join(parts))
_route_paths = st.one_of(
    _segments,
    _segments.map(lambda p: p.rstrip("/") + "/*"),
    _segments.map(lambda p: p + "*"),
    st.sampled_from(["/*/y", "/x/*y", "/x*y/*", "/x/"]),
)
_routes = st.builds(
    Route,
    host=_route_hosts,
    path=_route_paths,
    service=st.sampled_from(["s1", "s2", "s3"]),
    priority=st.integers(0, 2),
    scheme=st.sampled_from([None, "http", "https", "ws"]),
    port=st.sampled_from([None, 80, 8080]),
)
_request_hosts = st.one_of(
    st.none(),
    _names.map(str.encode),
    _names.map(lambda n: n.upper().encode() + b".:8080"),
)
_requests = st.tuples(
    _request_hosts,
    st.one_of(_segments.map(str.encode), _segments.map(lambda p: p.encode() + b"?x")),
    st.sampled_from(["http", "https"]),
    st.sampled_from([80, 443, 8080]),
)
Request = tuple[bytes | None, bytes, str, int]


@given(st.lists(_routes, max_size=8), st.lists(_requests, min_size=1, max_size=12), st.data())
def test_result_never_depends_on_route_order(routes: list[Route], requests: list[Request], data: st.DataObject) -> None:
    shuffled = RouteTable(data.draw(st.permutations(routes)))
    table = RouteTable(routes)
    assert table.routes == shuffled.routes
    for request in requests:
        assert table.match(*request) == shuffled.match(*request)


@given(st.lists(_routes, max_size=8), _routes, st.lists(_requests, min_size=1, max_size=12))
def test_adding_a_route_only_changes_requests_it_matches(
    routes: list[Route], extra: Route, requests: list[Request]
) -> None:
    before, after, alone = RouteTable(routes), RouteTable([*routes, extra]), RouteTable([extra])
    for request in requests:
        if alone.match(*request) is None:
            assert after.match(*request) == before.match(*request)


@given(st.lists(_routes, max_size=8), st.lists(_requests, min_size=1, max_size=12))
def test_winner_matches_and_exact_hosts_come_first(routes: list[Route], requests: list[Request]) -> None:
    table = RouteTable(routes)
    for request in requests:
        matching = [r for r in routes if RouteTable([r]).match(*request) is not None]
        winner = table.match(*request)
        assert (winner is None) == (not matching)
        assert winner is None or winner in matching
        if any("*" not in r.host for r in matching):
            assert winner is not None and "*" not in winner.host


_raw_hosts = st.one_of(
    st.binary(max_size=12),
    st.text("aB.-:%2[]1_@", max_size=12).map(str.encode),
    _names.map(str.encode),
)


@given(_raw_hosts)
def test_resolve_rejects_exactly_the_hosts_normalize_rejects(raw: bytes) -> None:
    table = RouteTable([Route("*", "/", "any")])
    if normalize_host(raw, "http") is None:
        with pytest.raises(BadRequest):
            table.resolve(raw, b"/", "http", 80)
    else:
        assert table.resolve(raw, b"/", "http", 80) == "any"


@given(st.lists(_routes, max_size=8), _names, _requests)
def test_host_case_trailing_dot_and_port_do_not_matter(routes: list[Route], name: str, request: Request) -> None:
    table = RouteTable(routes)
    _, path, scheme, port = request
    plain = table.match(name.encode(), path, scheme, port)
    for variant in (name.upper(), name + ".", name + ":1234", name.upper() + ".:80"):
        assert table.match(variant.encode(), path, scheme, port) == plain
