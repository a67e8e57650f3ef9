"""The hand-written corpus through HAProxy, nginx and pylb (both drivers): pylb differs from both
only where docs/http.md says why, gives the verdict pinned there, sends clients canonical
messages, and the table in docs/http.md is what this run produced."""

from __future__ import annotations

import re

import h11
import pytest

from tests.conformance.corpus import BY_ID, CASES
from tests.conformance.deviations import BY_CASE, DEVIATIONS
from tests.conformance.proxies import PYLBS, versions
from tests.conformance.runner import Case, Outcome
from tests.conformance.suite import Result
from tests.conformance.table import current, render
from tests.conformance.wire import head_end

IDS = [case.id for case in CASES]
_TOKEN_RE = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")


@pytest.mark.parametrize("case_id", IDS)
def test_both_drivers_give_the_same_verdict(results: dict[str, Result], case_id: str) -> None:
    verdicts = results[case_id].verdicts
    assert verdicts["pylb"] == verdicts["pylb-task"], verdicts


@pytest.mark.parametrize("case_id", IDS)
def test_pylb_differs_from_both_only_where_the_table_says_why(results: dict[str, Result], case_id: str) -> None:
    v = results[case_id].verdicts
    differs = v["pylb"] not in (v["haproxy"], v["nginx"])
    deviation = BY_CASE.get(case_id)
    if deviation is None:
        assert not differs, (
            f"pylb differs from HAProxy and nginx, and tests/conformance/deviations.py does not say why: "
            f"fix pylb, or document the choice there. Verdicts: {v}"
        )
        return
    assert v["pylb"] == deviation.cases[case_id], f"pylb's verdict changed from the one pinned ({deviation.key})"
    assert differs, f"no longer a difference (HAProxy or nginx agrees now): drop it from {deviation.key}. {v}"


def test_every_documented_case_exists() -> None:
    assert set(BY_CASE) <= set(BY_ID), set(BY_CASE) - set(BY_ID)
    assert all(d.cases for d in DEVIATIONS)


def _h11_statuses(case: Case, outcome: Outcome) -> list[int]:
    """The statuses h11, a strict client, reads from what pylb sent (raises if it cannot)."""
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(outcome.client_raw)
    statuses: list[int] = []
    methods = [m if _TOKEN_RE.fullmatch(m) else b"GET" for m in case.methods()]  # h11 sends tokens only
    headers = [("Host", "a.test")]
    if any(r.status == 101 for r in outcome.responses):
        headers += [("Connection", "Upgrade"), ("Upgrade", "websocket")]
    finals = len([r for r in outcome.responses if not 100 <= r.status < 200])
    for i in range(max(finals, 1)):
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        method = methods[min(i, len(methods) - 1)]
        conn.send(h11.Request(method=method, target="/", headers=headers))
        conn.send(h11.EndOfMessage())
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(b"")  # a body delimited by the close
                continue
            if isinstance(event, h11.InformationalResponse):
                statuses.append(event.status_code)
                if event.status_code == 101:
                    return statuses
            elif isinstance(event, h11.Response):
                statuses.append(event.status_code)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    return statuses


@pytest.mark.parametrize("proxy", PYLBS)
@pytest.mark.parametrize("case_id", IDS)
def test_clients_get_canonical_messages_from_pylb(results: dict[str, Result], case_id: str, proxy: str) -> None:
    """CRLF line ends, one framing header, and nothing h11 (a strict client) cannot read."""
    outcome = results[case_id].outcomes[proxy]
    for msg in outcome.responses:
        head = msg.raw[: head_end(msg.raw)]
        assert b"\n" not in head.replace(b"\r\n", b""), f"not CRLF throughout: {head!r}"
        names = [name.lower() for name, _ in msg.fields]
        assert names.count(b"content-length") + names.count(b"transfer-encoding") <= 1, head
    if not outcome.responses or not all(msg.complete for msg in outcome.responses):
        return  # nothing, or an answer cut short (the client must see an error: it does)
    assert _h11_statuses(BY_ID[case_id], outcome) == [msg.status for msg in outcome.responses]


def test_the_table_in_docs_http_md_is_what_this_run_produced(results: dict[str, Result]) -> None:
    assert current() == render(results, versions()), "run: python -m tests.conformance.table"
