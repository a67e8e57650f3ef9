import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylb.core.errors import BadRequest
from pylb.core.framing import ChunkedScanner


def scan(data: bytes, step: int) -> int:
    scanner = ChunkedScanner(BadRequest)
    used = 0
    for i in range(0, len(data), step):
        piece = data[i : i + step]
        n = scanner.feed(piece)
        used += n
        if scanner.done:
            return used
        assert n == len(piece)
    return -1


BODY = b"5\r\nhello\r\n1;ext=1;q=\"a b\"\r\n!\r\n0\r\nX-Trailer: yes\r\n\r\n"


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_chunked_end_found_at_any_split(step: int) -> None:
    assert scan(BODY + b"GET / HTTP/1.1\r\n", step) == len(BODY)


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=6), st.integers(1, 64))
def test_chunked_roundtrip(chunks: list[bytes], step: int) -> None:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    assert scan(body + b"next", step) == len(body)


@pytest.mark.parametrize(
    "body",
    [
        b"x\r\n",
        b"-1\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"1000000000000000\r\n",
        b"0\r\nBad Trailer\r\n\r\n",
        b"5;\r\nhello\r\n",
        b"1" * 5000,
    ],
)
def test_invalid_chunked_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(BadRequest):
        scan(body, 1)
