"""Fixtures of the conformance suite: the four proxies, started once, and the corpus run once
through them (about 20 s: each proxy runs the corpus in its own thread).

Without HAProxy or nginx the comparison cannot run: outside CI the tests that need them skip
with the reason, in CI (CI=true, as .ci/run sets) they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conformance.corpus import CASES
from tests.conformance.proxies import Proxy, missing, open_proxies
from tests.conformance.suite import Result, run_all


def require_proxies() -> None:
    absent = missing()
    if not absent:
        return
    reason = f"{' and '.join(absent)} not installed (apt-get install haproxy nginx-light)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the conformance suite needs them in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def proxies() -> Iterator[dict[str, Proxy]]:
    require_proxies()
    with open_proxies() as running:
        yield running


@pytest.fixture(scope="session")
def results(proxies: dict[str, Proxy]) -> dict[str, Result]:
    return run_all(proxies, CASES)
