"""Generated requests (hypothesis, derandomized: CI runs the same examples every time) through
HAProxy, nginx and pylb: pylb's drivers agree; where pylb differs from both proxies (a refusal
counting as a refusal, whatever its status), one of the documented reasons covers the request;
and whatever pylb does, it never forwards two requests for one, nor a framing the backend could
read two ways, and answers the client canonically.

Requests are built from pieces chosen to sit on the parsers' edges (separators, versions,
targets, field names and values with control bytes, folds and bare LFs, framing fields in
agreement or not). The body is followed by 32 bytes of CRLFs, so that no proxy, whichever
framing it picks, waits for bytes that never come.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conformance.deviations import DEVIATIONS
from tests.conformance.proxies import Proxy
from tests.conformance.runner import Case
from tests.conformance.suite import run_all

EXAMPLES = 300
PADDING = b"\r\n" * 16

def mostly(common: bytes, times: int, *others: bytes) -> st.SearchStrategy[bytes]:
    """``common`` ``times`` times as likely as each of ``others``: most pieces of a request are
    plain, so that a request has one or two odd ones, not all of them."""
    return st.sampled_from([common] * times + list(others))


methods = st.sampled_from([b"GET"] * 6 + [b"POST"] * 3 + [b"PUT", b"get", b"OPTIONS", b"G(T"])
separators = mostly(b" ", 12, b"  ", b"\t")
targets = st.sampled_from(
    [b"/"] * 4 + [b"/a?b=c"] * 3 + [b"http://a.test/x", b"http://b.test/", b"*", b"/caf\xc3\xa9", b"a.test:80"]
)
versions = mostly(b"HTTP/1.1", 10, b"HTTP/1.0", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1")
line_ends = mostly(b"\r\n", 20, b"\n")
colons = mostly(b": ", 12, b":", b":\t", b" : ")
FIELDS = {
    b"Host": [b"a.test"] * 4 + [b"b.test", b"u@a.test", b"a.test:x", b"caf\xc3\xa9.test"],
    b"Content-Length": [b"5"] * 4 + [b"15", b"0", b"5, 5", b"+5"],
    b"Transfer-Encoding": [b"chunked"] * 4 + [b"Chunked", b"gzip, chunked", b"chunked, gzip", b", chunked"],
    b"Connection": [b"keep-alive", b"close", b"x-a", b"upgrade", b"te"],
    b"Upgrade": [b"websocket", b"h2c"],
    b"TE": [b"trailers"],
    b"Expect": [b"100-continue"],
    b"Proxy-Connection": [b"keep-alive"],
    b"Trailer": [b"X-T"],
}
OTHER_NAMES = [b"X-A"] * 4 + [b"Accept", b"x-b", b"X_A", b"X(A)", b"X-A "]
OTHER_VALUES = [b"1"] * 6 + [b"a b", b"", b"a\x01b", b"a\x7fb", b"caf\xc3\xa9", b"a\r\n b", b"a\tb"]


@st.composite
def fields(draw: st.DrawFn) -> tuple[bytes, bytes]:
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(FIELDS)))
        return name, draw(st.sampled_from(FIELDS[name]))
    return draw(st.sampled_from(OTHER_NAMES)), draw(st.sampled_from(OTHER_VALUES))


@st.composite
def generated_requests(draw: st.DrawFn) -> bytes:
    method, target, version = draw(methods), draw(targets), draw(versions)
    head = method + draw(separators) + target + b" " + version + draw(line_ends)
    lines = [(b"Host", b"a.test")] if draw(st.integers(0, 9)) < 9 else []
    lines += draw(st.lists(fields(), max_size=4))
    for name, value in lines:
        head += name + draw(colons) + value + draw(line_ends)
    head += draw(line_ends)
    chunked = any(name.lower() == b"transfer-encoding" for name, _ in lines)
    return head + (b"5\r\nhello\r\n0\r\n\r\n" if chunked else b"hello") + PADDING


def _coarse(verdict: str) -> str:
    """A refusal is a refusal: which status a proxy answers depends on which of several faults
    it checks first, and generated requests often have several."""
    return "refused" if verdict.startswith("own 4") or verdict.startswith("own 5") else verdict


def _explained(request: bytes) -> list[str]:
    return [d.key for d in DEVIATIONS if d.applies is not None and d.applies(request)]


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(generated_requests())
def test_pylb_on_generated_requests(proxies: dict[str, Proxy], request: bytes) -> None:
    case = Case("generated", "generated", "", request)
    result = run_all(proxies, [case])["generated"]
    v = result.verdicts
    assert v["pylb"] == v["pylb-task"], f"the drivers disagree on {request!r}: {v}"
    pylb = v["pylb"]
    assert "!" not in pylb.split(";")[0], f"pylb forwarded framing the backend could read two ways: {v}"
    assert not pylb.startswith("fwd x"), f"pylb forwarded two requests for one: {request!r}: {v}"
    assert "bare LF!" not in pylb and "fold!" not in pylb, v
    if _coarse(pylb) in (_coarse(v["haproxy"]), _coarse(v["nginx"])):
        return
    assert _explained(request), (
        f"pylb differs from HAProxy and nginx on {request!r}, and no documented reason covers it: {v}"
    )
