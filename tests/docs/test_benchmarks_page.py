"""docs/benchmarks.md shows the latest benchmark run: the plot is a copy of
benchmarks/results/latest.png, the date it states is latest.json's, and the
tables it includes (latest.md from its third line) start after the title."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from tests.docs.doctext import DOCS

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
PAGE = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
FIX = "after a benchmark run: cp benchmarks/results/latest.png docs/img/benchmarks.png, and update the date"


def test_the_plot_is_the_latest_runs() -> None:
    assert "](img/benchmarks.png)" in PAGE
    assert (DOCS / "img" / "benchmarks.png").read_bytes() == (RESULTS / "latest.png").read_bytes(), FIX


def test_the_date_is_the_latest_runs() -> None:
    started = datetime.strptime(json.loads((RESULTS / "latest.json").read_text())["started"], "%Y-%m-%dT%H:%M:%S%z")
    stated = re.search(r"the run of \*\*(\d{4}-\d\d-\d\d), (\d\d:\d\d) UTC\*\*", PAGE)
    assert stated is not None, "the page states the run's date as: the run of **YYYY-MM-DD, HH:MM UTC**"
    assert stated.groups() == (f"{started:%Y-%m-%d}", f"{started:%H:%M}"), FIX


def test_the_included_tables_start_after_the_title() -> None:
    assert '--8<-- "benchmarks/results/latest.md:3:"' in PAGE
    first, second, third = (RESULTS / "latest.md").read_text(encoding="utf-8").splitlines()[:3]
    assert first.startswith("# ") and second == "" and third.startswith("Run "), "latest.md's layout changed"
