"""Request ids: unique per source, header- and HTML-safe, the prefix given from outside."""

import re

import pytest

from pylb.core.requestid import RequestIds


def test_ids_are_the_prefix_and_a_counter() -> None:
    ids = RequestIds("3f9a1c2e")
    issued = [ids.next() for _ in range(1000)]
    assert issued[:3] == ["3f9a1c2e-1", "3f9a1c2e-2", "3f9a1c2e-3"]
    assert len(set(issued)) == 1000
    assert all(re.fullmatch(r"[0-9A-Za-z-]+", rid) for rid in issued)
    assert repr(ids) == "<RequestIds prefix='3f9a1c2e' issued=1000>"


@pytest.mark.parametrize("prefix", ["", "a b", "x\r\nSet-Cookie: y", "<script>", "a" * 33])
def test_a_prefix_that_could_break_a_header_or_a_page_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        RequestIds(prefix)
