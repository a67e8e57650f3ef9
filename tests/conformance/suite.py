"""Running the corpus through every proxy at once, and the results as one table of verdicts.

Owns: ``run_all`` (each proxy gets its own thread and its own recording backend, so the proxies
run side by side and a case's wait on one does not hold up the others), and ``Results``: for
each case, each proxy's outcome and verdict.
Must not know: what is documented, how the table is laid out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tests.conformance.proxies import Proxy
from tests.conformance.runner import Case, Outcome, run_case
from tests.conformance.verdict import describe


@dataclass
class Result:
    case: Case
    outcomes: dict[str, Outcome]
    verdicts: dict[str, str]


def run_all(proxies: Mapping[str, Proxy], cases: Iterable[Case]) -> dict[str, Result]:
    """Every case through every proxy; results keyed by case id, in corpus order."""
    cases = list(cases)
    outcomes: dict[str, dict[str, Outcome]] = {name: {} for name in proxies}
    errors: list[BaseException] = []

    def one_proxy(proxy: Proxy) -> None:
        try:
            for case in cases:
                outcomes[proxy.name][case.id] = run_case(proxy, case)
        except BaseException as exc:  # reported in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=one_proxy, args=(p,), name=f"conformance-{p.name}") for p in proxies.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    results = {}
    for case in cases:
        per_proxy = {name: outcomes[name][case.id] for name in proxies}
        results[case.id] = Result(case, per_proxy, {name: describe(case, o) for name, o in per_proxy.items()})
    return results
