"""The pure pieces of pylb.observe, with tables: error classes, percentiles, writes, merging."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import trio

from pylb.core.http1 import parse_request
from pylb.core.models import Backend
from pylb.core.record import Capture, request_record
from pylb.core.requestid import RequestIds
from pylb.observe.accesslog import PIPE_BUF, AccessLog, Live, chunks
from pylb.observe.hub import SLICE, Observation
from pylb.observe.stats import BOUNDS, EXPOSED, Tally, error_kind, figures, percentile


@pytest.mark.parametrize(
    ("termination", "status", "kind"),
    [
        ("--", 200, None),
        ("LR", 301, None),  # a redirect: pylb answered, no error
        ("PR", 400, "request"),
        ("cR", 408, "request"),
        ("PR", 503, "no_backend"),
        ("SC", 502, "connect"),
        ("sC", 504, "connect"),
        ("SH", 502, "response"),
        ("sH", 504, "response"),
        ("SD", 200, "response"),  # cut mid-answer
        ("CD", 200, "client"),
        ("cD", 200, "client"),
        ("KD", 0, "killed"),
    ],
)
def test_error_classes(termination: str, status: int, kind: str | None) -> None:
    assert error_kind(termination, status) == kind


def test_every_exposed_bound_is_a_bound_of_the_histogram() -> None:
    assert set(EXPOSED) <= set(BOUNDS) and list(BOUNDS) == sorted(BOUNDS)


def test_percentiles_fall_in_the_right_bucket() -> None:
    counts = [0] * (len(BOUNDS) + 1)
    counts[BOUNDS.index(0.001)] = 98  # 98 answers in (0.8 ms, 1 ms]
    counts[BOUNDS.index(0.5)] = 2  # 2 in (400 ms, 500 ms]
    p50, p99 = percentile(counts, 0.5), percentile(counts, 0.99)
    assert p50 is not None and 0.8 <= p50 <= 1.0
    assert p99 is not None and 400 <= p99 <= 500
    assert percentile([0] * len(counts), 0.5) is None


def _capture(status: int, seconds: float, termination: str = "--", backend: int = 1, number: int = 1) -> Capture:
    """What the exchange machine hands over for one request: its head read at 0.0, a reused
    backend connection, the request forwarded at once and answered ``seconds`` later."""
    head = parse_request(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
    timing = [0.0, 0.0, -1.0, -1.0, 0.0, seconds]
    return (
        b"127.0.0.1", 40000, head, Backend("10.0.0.1", backend), status, 100, 50, timing, seconds, 0, termination,
        number, "web", "http:80", RequestIds("t"),
    )  # fmt: skip


def test_tallies_of_workers_add_up_to_one_tally_of_everything() -> None:
    captures = [_capture(200, 0.002), _capture(502, 0.01, "SH", 2), _capture(404, 0.003), _capture(200, 0.2, "CD")]
    one, two, both = Tally(), Tally(), Tally()
    one.add(captures[:2])
    two.add(captures[2:])
    both.add(captures)
    merged = Tally()
    merged.merge(one.cells)
    merged.merge(two.cells)
    assert merged.cells == both.cells
    total = figures(both.cells.values())
    assert total["records"] == 4 and total["bytes_out"] == 400 and total["bytes_in"] == 200
    assert total["responses"] == {"1xx": 0, "2xx": 2, "3xx": 0, "4xx": 1, "5xx": 1, "other": 0}
    assert total["errors"]["response"] == 1 and total["errors"]["client"] == 1


def test_a_capture_becomes_the_record_of_its_request() -> None:
    record = request_record(_capture(502, 0.25, "SH", 2))
    assert (record.client, record.client_port, record.method, record.target, record.host) == (
        "127.0.0.1", 40000, "GET", "/", "app.test",
    )  # fmt: skip
    assert (record.status, record.bytes_sent, record.bytes_received, record.backend) == (
        502, 100, 50, Backend("10.0.0.1", 2),
    )  # fmt: skip
    assert (record.t_request, record.t_connect, record.t_response, record.seconds) == (0.0, -1.0, 0.25, 0.25)
    assert (record.termination, record.request_id, record.listener, record.service) == ("SH", "t-1", "http:80", "web")
    assert (record.user_agent, record.referer) == ("", "")


def test_writes_end_on_a_line_and_fit_in_pipe_buf() -> None:
    lines = [f"line {i} " + "x" * (i % 300) + "\n" for i in range(500)] + ["y" * (PIPE_BUF + 10) + "\n", "last\n"]
    parts = chunks(lines)
    assert all(len(part) <= PIPE_BUF and part.endswith(b"\n") for part in parts)
    text = b"".join(parts).decode()
    assert text.startswith("".join(lines[:500])) and text.endswith("\nlast\n")  # the long line cut, not lost


def test_a_reader_that_does_not_read_never_blocks_and_lines_are_counted_as_dropped() -> None:
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        log = AccessLog("haproxy", fd=write)
        batch = [_capture(200, 0.001) for _ in range(100)]
        while log.dropped == 0:  # nobody drains: the queue fills to its limit, then lines are dropped
            log.queue(log.lines_for(batch, Live(), 0.0))
        assert log.lines > 0 and log.dropped >= 100
    finally:
        os.close(read)
        os.close(write)


async def test_lines_keep_their_order_when_statistics_are_read_between_slices(tmp_path: Path) -> None:
    """The flush task folds a batch a slice at a time; a reader of statistics
    folding the rest meanwhile must neither lose a line nor reorder them."""
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT)
    try:
        observation = Observation(Tally(), AccessLog("haproxy", fd=fd))
        slices = 10  # the task folds one a turn: some are still waiting when this task's turn comes
        numbers = iter(range(1, (slices + 2) * SLICE))
        for _ in range(slices * SLICE):
            observation.recorder(_capture(200, 0.001, number=next(numbers)))
        async with trio.open_nursery() as nursery:
            await nursery.start(observation.run)
            while observation.flushes == 0:  # the task folded its first slice and let others run
                await trio.sleep(0)
            assert observation.flushes < slices  # (trio may have let it fold one more first)
            for _ in range(SLICE):
                observation.recorder(_capture(200, 0.001, number=next(numbers)))
            observation.flush()  # what Balancer.statistics() does
            assert observation.tally is not None and observation.tally.records == (slices + 1) * SLICE
            nursery.cancel_scope.cancel()
        observation.close()
    finally:
        os.close(fd)
    text = (tmp_path / "log").read_text()
    ids = [int(found, 16) for found in re.findall(r"\{t-([0-9a-f]+)\}", text)]
    assert ids == list(range(1, (slices + 1) * SLICE + 1))


def test_lines_are_written_at_the_end_even_when_a_writer_thread_never_ran(tmp_path: Path) -> None:
    """A writer task cancelled before its thread started (a balancer stopping) must leave nothing
    held: the last flush writes the lines (they were lost after a 2 s wait when asking for a writer
    took the role)."""
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT)
    try:
        log = AccessLog("haproxy", fd=fd)
        observation = Observation(None, log)
        observation.recorder(_capture(200, 0.001, number=7))
        observation.flush()
        assert log.wants_writer()  # the task would start a thread here; suppose it never runs
        observation.close()
    finally:
        os.close(fd)
    assert re.findall(r"\{t-([0-9a-f]+)\}", (tmp_path / "log").read_text()) == ["7"]
