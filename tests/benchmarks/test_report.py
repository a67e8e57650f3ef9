"""The report of the new cases: targets "within 2x HAProxy's + 1 ms", the latency table, and the
notes saying what TLS both proxies negotiated and whether HAProxy spliced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.cases import CASES, CASES_BY_NAME, Outcome, Target

TLS13 = {
    "version": "TLSv1.3",
    "cipher": "TLS_AES_256_GCM_SHA384",
    "group": "X25519",
    "signature": "ECDSA",
    "tickets_resume": True,
}
RUN = {"started": "2026-12-04T18:00:00+0000", "stamp": "20261204-180000", "duration_s": 5, "command": "x"}
RUN |= {"environment": "test"}


@pytest.mark.parametrize(
    ("pylb", "haproxy", "met"),
    [(1.5, 0.3, True), (1.6, 0.3, True), (1.61, 0.3, False), (42.7, 0.28, False), (None, 0.3, None), (1.0, None, None)],
)
def test_a_target_with_a_margin_is_twice_haproxy_plus_one(pylb: float | None, haproxy: float | None, met: bool) -> None:
    target = Target("first_p50_ms", "<=", 2.0, plus=1.0)
    ratio = pylb / haproxy if pylb is not None and haproxy else None
    assert target.met(ratio, pylb, haproxy) is met
    assert target.describe() == "first byte p50 ms <= 2x + 1"


def test_the_issue_targets_are_in_the_table() -> None:
    targets = {case.name: {t.describe() for t in case.targets} for case in CASES}
    assert targets["https_keepalive"] == {"req/s >= 0.6x", "CPU us/req <= 2x"}
    assert targets["https_close"] == {"req/s >= 0.8x"}
    assert targets["browser_varied"] == {"req/s >= 0.7x", "CPU us/req <= 1.5x"}
    assert targets["small_varied"] == {"req/s >= 0.5x", "CPU us/req <= 1.5x"}
    assert targets["tcp_bulk"] == {"MiB/s >= 1x"}
    assert targets["latency_tls_new"] == {"first byte p50 ms <= 2x + 1"}
    assert CASES_BY_NAME["https_keepalive"].tls and CASES_BY_NAME["tcp_bulk"].splice == "forced"


def _latency(first: float, tls: dict[str, object] | None = None) -> Outcome:
    metrics = {"first_p50_ms": first, "first_p99_ms": first * 2, "p50_ms": first + 1, "p99_ms": first + 3}
    info: dict[str, object] = {"samples": 200, **({"tls": tls} if tls else {})}
    return Outcome({**metrics, "cpu_us_per_req": 500.0, "errors": 0.0}, info)


def test_the_latency_table_and_the_tls_note(tmp_path: Path) -> None:
    case = CASES_BY_NAME["latency_tls_new"]
    results = {"haproxy": _latency(0.3, TLS13), "pylb": _latency(42.7, TLS13)}
    reports = [report.CaseReport(case, results)]
    text = report.markdown(RUN, reports)
    assert "| latency_tls_new | first byte p50 ms <= 2x + 1 | 0.3 | 42.7 | 142.33x | **not met** |" in text
    assert "## What one user feels" in text and "## All figures" not in text
    assert "| latency_tls_new | pylb | 42.7 | 85.4 | 43.7 | 45.7 | 500.0 | 200 | 0 |" in text
    assert (
        "- `latency_tls_new` TLS: both proxies negotiated TLSv1.3, TLS_AES_256_GCM_SHA384, group X25519, "
        "ECDSA certificate; session tickets resume"
    ) in text
    report.write(RUN, reports, tmp_path)
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert saved["cases"][0]["targets"][0]["met"] is False
    assert saved["cases"][0]["results"]["pylb"]["info"]["tls"]["group"] == "X25519"


def test_a_tls_difference_is_said_side_by_side() -> None:
    case = CASES_BY_NAME["https_keepalive"]
    other = {**TLS13, "group": "secp256r1", "tickets_resume": False}
    results = {"haproxy": Outcome({"req_s": 1.0}, {"tls": TLS13}), "pylb": Outcome({"req_s": 1.0}, {"tls": other})}
    text = report.markdown(RUN, [report.CaseReport(case, results)])
    assert "**the proxies negotiated differently** (haproxy: TLSv1.3" in text
    assert "pylb: TLSv1.3, TLS_AES_256_GCM_SHA384, group secp256r1, ECDSA certificate; no resumption" in text


@pytest.mark.parametrize(
    ("case", "pipes", "said"),
    [
        ("tcp_bulk", ("0", "2"), "spliced: 2 pipes in use or pooled after the run"),
        ("tcp_bulk", ("0", "0"), "**did not splice**"),
        ("big_1mib", ("0", "0"), "did not splice (option splice-auto)"),
    ],
)
def test_the_splice_note(case: str, pipes: tuple[str, str], said: str) -> None:
    info = {"haproxy_show_info": {"PipesUsed": pipes[0], "PipesFree": pipes[1]}}
    results = {"haproxy": Outcome({"mib_s": 1.0}, info), "pylb": Outcome({"mib_s": 1.0})}
    text = report.markdown(RUN, [report.CaseReport(CASES_BY_NAME[case], results)])
    assert f"- `{case}` haproxy: {said}" in text


def test_the_access_log_cost_is_said_when_both_cases_ran() -> None:
    def outcome(cpu: float) -> Outcome:
        return Outcome({"req_s": 1000.0, "cpu_us_per_req": cpu, "errors": 0.0})

    plain = report.CaseReport(CASES_BY_NAME["small_keepalive"], {"haproxy": outcome(12.0), "pylb": outcome(20.0)})
    logged = report.CaseReport(CASES_BY_NAME["small_keepalive_log"], {"haproxy": outcome(13.2), "pylb": outcome(26.0)})
    text = report.markdown(RUN, [plain, logged])
    assert (
        "- access log cost, CPU per request (`small_keepalive_log` against `small_keepalive`, same run): "
        "haproxy +10%, pylb +30%; pylb's target, at most +10%: **not met**"
    ) in text
    cheap = report.CaseReport(CASES_BY_NAME["small_keepalive_log"], {"haproxy": outcome(13.2), "pylb": outcome(21.0)})
    assert "pylb +5%; pylb's target, at most +10%: met" in report.markdown(RUN, [plain, cheap])
    assert "access log cost" not in report.markdown(RUN, [logged])  # nothing to compare it with
