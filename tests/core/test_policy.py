from pylb.core.http1 import parse_request, parse_response
from pylb.core.policy import error_response, forwarded_suffix, request_head_out, response_head_out

SUFFIX = forwarded_suffix("192.0.2.7", "http", 8080)


def test_canonical_head_is_forwarded_unchanged_plus_forwarding_headers() -> None:
    head = parse_request(b"GET /a HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n\r\n")
    assert request_head_out(head, SUFFIX, b"192.0.2.7") == (
        b"GET /a HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n"
        b"X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\n"
        b"X-Forwarded-Host: a.test\r\n\r\n"
    )


def test_hop_by_hop_and_spoofed_headers_are_stripped_and_xff_appended() -> None:
    head = parse_request(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n"
        b"TE: trailers\r\nTrailer: X\r\nProxy-Authorization: y\r\nUpgrade: z\r\nX-Forwarded-For: 10.1.1.1\r\n"
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\nX-Keep: me\r\n\r\n"
    )
    out = request_head_out(head, SUFFIX, b"192.0.2.7")
    assert out == (
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Keep: me\r\nX-Forwarded-For: 10.1.1.1, 192.0.2.7\r\n"
        b"X-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\nX-Forwarded-Host: a\r\n\r\n"
    )


BROWSER_HEAD = (
    b"GET /index.html HTTP/1.1\r\nHost: a.test\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
    b"Accept: text/html,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Mode: navigate\r\n\r\n"
)


def test_a_lone_connection_keep_alive_is_cut_out_and_the_other_lines_keep_their_bytes() -> None:
    out = request_head_out(parse_request(BROWSER_HEAD), SUFFIX, b"192.0.2.7")
    assert out == BROWSER_HEAD.replace(b"Connection: keep-alive\r\n", b"")[:-2] + (
        b"X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\n"
        b"X-Forwarded-Host: a.test\r\n\r\n"
    )


def test_no_form_of_connection_reaches_the_backend() -> None:
    for line in (
        b"Connection: keep-alive",
        b"connection:keep-alive",
        b"CONNECTION:   Keep-Alive  ",
        b"Connection: close",
        b"Connection: keep-alive, X-A",
    ):
        for where in (b"Host: a\r\n", b""):  # first field, or last
            raw = b"GET / HTTP/1.1\r\n" + (b"Host: a\r\n" if where else b"") + line + b"\r\nAccept: */*\r\n"
            raw += (b"" if where else b"Host: a\r\n") + b"\r\n"
            out = request_head_out(parse_request(raw), SUFFIX, b"192.0.2.7")
            assert b"connection" not in out.lower(), (raw, out)
            assert out.startswith(b"GET / HTTP/1.1\r\n") and b"\r\nAccept: */*\r\n" in out


def test_response_head_says_whether_the_connection_stays() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert response_head_out(parse_response(raw, b"GET"), 1, True) == raw
    assert response_head_out(parse_response(raw, b"GET"), 1, False).endswith(b"Connection: close\r\n\r\n")
    assert response_head_out(parse_response(raw, b"GET"), 0, True).endswith(b"Connection: keep-alive\r\n\r\n")
    stripped = response_head_out(
        parse_response(b"HTTP/1.1 200 OK\r\nConnection: x-a\r\nX-A: 1\r\nKeep-Alive: 1\r\nContent-Length: 0\r\n\r\n",
                       b"GET"), 1, True)
    assert stripped == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_error_page_escapes_what_it_echoes() -> None:
    page = error_response(503, "Service Unavailable", "no service for host <script>")
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Length: %d\r\n" % len(body) in head
    assert b"&lt;script&gt;" in body and b"<script>" not in body
