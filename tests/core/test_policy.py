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
    # Trailer stays: RFC 9110 6.6.2 makes it end-to-end
    head = parse_request(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n"
        b"TE: trailers\r\nTrailer: X\r\nProxy-Authorization: y\r\nUpgrade: z\r\nX-Forwarded-For: 10.1.1.1\r\n"
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\nX-Keep: me\r\n\r\n"
    )
    out = request_head_out(head, SUFFIX, b"192.0.2.7")
    assert out == (
        b"GET / HTTP/1.1\r\nHost: a\r\nTrailer: X\r\nX-Keep: me\r\nX-Forwarded-For: 10.1.1.1, 192.0.2.7\r\n"
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


def test_repeated_equal_lengths_go_out_as_one_line() -> None:
    head = parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX: y\r\nContent-Length: 5\r\n\r\n")
    assert request_head_out(head, SUFFIX, b"192.0.2.7") == (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX: y\r\n" + SUFFIX + b"X-Forwarded-Host: a\r\n\r\n"
    )
    response = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n", b"GET")
    assert response_head_out(response, 1, True) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    head_response = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Length: 9\r\n\r\n", b"HEAD")
    assert response_head_out(head_response, 1, True) == b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"


def test_trailer_is_end_to_end() -> None:
    head = parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert b"Trailer: X-T\r\n" in request_head_out(head, SUFFIX, b"192.0.2.7")
    response = parse_response(b"HTTP/1.1 200 OK\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n", b"GET")
    assert response_head_out(response, 1, True) == response.raw


def test_a_normalized_response_goes_out_with_crlf() -> None:
    head = parse_response(b"HTTP/1.1 200 OK\r\nContent-type: text/html\n\n", b"GET")
    assert response_head_out(head, 1, False) == (
        b"HTTP/1.1 200 OK\r\nContent-type: text/html\r\nConnection: close\r\n\r\n"
    )
    assert response_head_out(head, 1, True) == b"HTTP/1.1 200 OK\r\nContent-type: text/html\r\n\r\n"


def test_error_page_says_the_status_and_the_request_id_and_no_more() -> None:
    page = error_response(502, "Bad Gateway", request_id="c0ffee-1a")
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"\r\nX-Request-Id: c0ffee-1a\r\n" in head + b"\r\n"
    assert b"Content-Length: %d\r\n" % len(body) in head
    assert b"502 Bad Gateway" in body and b"c0ffee-1a" in body
    assert b"Connection: close" in head
    bare = error_response(503, "Service Unavailable", keep_alive=True)
    assert b"X-Request-Id" not in bare and b"Request id" not in bare and b"Connection: keep-alive" in bare
    assert error_response(504, "Gateway Timeout", head_only=True, request_id="a-1").endswith(b"\r\n\r\n")
