import pytest

from pylb.core.errors import ConfigError
from pylb.core.models import Backend, PortSet, Route, Service, Snapshot


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", Backend("127.0.0.1", 8080)),
        ("web1:80", Backend("web1", 80)),
        ("[::1]:81", Backend("::1", 81)),
        ("10.0.0.5:8080,weight=3", Backend("10.0.0.5", 8080, 3)),
        (" a.example:1 , weight=256", Backend("a.example", 1, 256)),
    ],
)
def test_backend_parse(text: str, expected: Backend) -> None:
    assert Backend.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("127.0.0.1", "not HOST:PORT"),
        ("127.0.0.1:99999", "port '99999'"),
        ("127.0.0.1:0", "other than 0"),
        ("host:abc", "port 'abc'"),
        ("bad host:80", "not a host name"),
        ("a:80,weight=0", "weight '0'"),
        ("a:80,weight=x", "weight 'x'"),
        ("a:80,color=red", "unknown option 'color'"),
        ("[zz]:80", "not an IPv6 address"),
    ],
)
def test_backend_parse_errors_name_the_input(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Backend.parse(text, "--backend")
    message = str(info.value)
    assert message.startswith("--backend: ")
    assert fragment in message
    assert "\n" not in message


def test_backend_identity_ignores_weight() -> None:
    assert Backend("a", 1, 5).key == Backend("a", 1, 1).key
    assert str(Backend("::1", 80)) == "[::1]:80"


def test_snapshot_checks_its_references() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Snapshot((Service("a"),), default="b")
    with pytest.raises(ConfigError, match="unknown service"):
        Snapshot((Service("a"),), routes=(Route("x.test", service="b"),))
    with pytest.raises(ConfigError, match="share a name"):
        Snapshot((Service("a"), Service("a")))
    with pytest.raises(ConfigError, match="listed twice"):
        Service("a", (Backend("h", 1), Backend("h", 1, 2)))
    with pytest.raises(ConfigError, match="unknown algorithm"):
        Service("a", balance="random")


def test_snapshots_compare_by_value() -> None:
    one = Snapshot.of_backends([Backend("a", 1), Backend("b", 2)])
    two = Snapshot.of_backends((Backend("a", 1), Backend("b", 2)))
    assert one == two
    assert hash(one) == hash(two)


@pytest.mark.parametrize(
    ("text", "inside", "outside", "shown"),
    [
        ("1024-65535", [1024, 5432, 65535], [22, 1023], "1024-65535"),
        ("22, 5432,7000-7099", [22, 5432, 7000, 7099], [23, 7100], "22,5432,7000-7099"),
        ("all", [1, 65535], [0], "1-65535"),
        ("none", [], [22, 5432], "none"),
    ],
)
def test_port_sets(text: str, inside: list[int], outside: list[int], shown: str) -> None:
    ports = PortSet.parse(text)
    assert all(p in ports for p in inside) and not any(p in ports for p in outside)
    assert str(ports) == shown
    assert PortSet.parse(str(ports)) == ports


@pytest.mark.parametrize("text", ["", "0", "70000", "10-5", "a-b", "22-", "-22", "5432/ssl"])
def test_bad_port_sets_name_the_option_and_the_form(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--tcp-ports"):
        PortSet.parse(text)
