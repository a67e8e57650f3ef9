"""pylb's own log lines: each with its level and, with several workers, the process."""

from __future__ import annotations

import re
import signal

from tests.conftest import read_until
from tests.observe.kit import hello, pylb


def test_with_two_workers_every_line_says_its_level_and_process() -> None:
    with hello("web1") as web, pylb("--workers", "2", "--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{web.port}",
                                    ready=r"INFO main pylb: listening on http://127\.0\.0\.1:(\d+)") as lb:  # fmt: skip
        lb.proc.send_signal(signal.SIGTERM)
        _, lines = read_until(lb.proc, r"w\d pylb: received SIGTERM")
        _, more = read_until(lb.proc, r"w\d pylb: received SIGTERM")
    lines += more
    lines = lb.stderr + lines
    head = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR|DEBUG) (main|w1|w2) "
    tagged = [re.match(head, line) for line in lines]
    assert all(tagged), lines
    assert {m.group(2) for m in tagged if m} >= {"w1", "w2"}


def test_log_level_warning_hides_the_info_lines() -> None:
    with hello("web1") as web, pylb("--bind", "127.0.0.1:0", "--backend", f"127.0.0.1:{web.port}",
                                    "--backend", "127.0.0.1:9", "--health-check", "inter 50 fall 1",
                                    ready=r"WARNING pylb.health: backend 127\.0\.0\.1:(9) is DOWN",
                                    LOG_LEVEL="warning") as lb:  # fmt: skip
        lb.proc.send_signal(signal.SIGTERM)
        lb.proc.wait(15)
        assert lb.proc.stderr is not None
        rest = lb.proc.stderr.read()
    assert lb.stderr[-1].startswith(tuple("0123456789"))  # the line has its time and level
    assert not [line for line in lb.stderr if " INFO " in line] and "INFO" not in rest
