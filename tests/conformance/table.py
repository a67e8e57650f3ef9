"""docs/http.md's conformance table, written from the suite's results so that it cannot drift.

Owns: rendering the results (one table per case class: each case's verdict from HAProxy, nginx
and pylb, and why pylb differs where it does; then the deliberate differences with their
reasons) and the part of docs/http.md between the two markers. ``python -m
tests.conformance.table`` (or scripts/gen-conformance) runs the suite and rewrites that part
(``--raw FILE``: and writes every exact byte the run saw);
tests/conformance/test_corpus.py fails when what is there is not what the suite produced.
Must not know: how cases are run or compared.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.conformance.deviations import BY_CASE, DEVIATIONS
from tests.conformance.suite import Result

DOC = Path(__file__).resolve().parents[2] / "docs" / "http.md"
BEGIN = "<!-- conformance table: written by `python -m tests.conformance.table`; edits here are lost -->"
END = "<!-- end of the conformance table -->"


def _cell(verdict: str) -> str:
    return f"`{verdict}`"


def render(results: Mapping[str, Result], versions: Mapping[str, str]) -> str:
    """The generated part of docs/http.md (markers excluded)."""
    out = [
        f"Measured with HAProxy {versions['haproxy']} and nginx {versions['nginx']} "
        f"({len(results)} cases; pylb gives the same verdicts on both of its drivers).",
        "",
    ]
    area = None
    for result in results.values():
        case = result.case
        if case.area != area:
            area = case.area
            out += ["", f"### {area[:1].upper()}{area[1:]}", "", "| case | RFC | HAProxy | nginx | pylb | why |",
                    "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        v = result.verdicts
        deviation = BY_CASE.get(case.id)
        why = f"[{deviation.title}](#why-{deviation.key})" if deviation else case.note
        out.append(
            f"| {case.id} | {case.rfc} | {_cell(v['haproxy'])} | {_cell(v['nginx'])} | {_cell(v['pylb'])} | {why} |"
        )
    out += ["", "### Why pylb differs", ""]
    for deviation in DEVIATIONS:
        out += [
            f'<a id="why-{deviation.key}"></a>**{deviation.title}** (RFC {deviation.rfc}; '
            f"{', '.join(deviation.cases)}): {deviation.why}",
            "",
        ]
    return "\n".join(out).rstrip("\n") + "\n"


def current() -> str:
    """What docs/http.md holds between the markers now."""
    text = DOC.read_text()
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:stop].strip("\n") + "\n"


def write(section: str) -> None:
    text = DOC.read_text()
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + section + "\n" + text[stop:])


def dump(results: Mapping[str, Result], path: Path) -> None:
    """Every exact byte of the run, for reading what a verdict sums up: per case and proxy, what
    the client sent and got, and what reached the backend (bytes as latin-1 text, one JSON)."""
    out = {
        cid: {
            "request": r.case.request.decode("latin-1"),
            "reply": r.case.reply.data.decode("latin-1"),
            "proxies": {
                name: {
                    "verdict": r.verdicts[name],
                    "client_got": o.client_raw.decode("latin-1"),
                    "backend_got": [raw.decode("latin-1") for raw in o.received.raw],
                }
                for name, o in r.outcomes.items()
            },
        }
        for cid, r in results.items()
    }
    path.write_text(json.dumps(out, indent=1))


def main(argv: list[str] | None = None) -> int:
    from tests.conformance.corpus import CASES
    from tests.conformance.proxies import missing, open_proxies, versions
    from tests.conformance.suite import run_all

    parser = argparse.ArgumentParser(prog="python -m tests.conformance.table", description=__doc__)
    parser.add_argument("--raw", type=Path, help="also write every exact byte of the run to this JSON file")
    args = parser.parse_args(argv)
    if missing():
        print(f"needs {' and '.join(missing())} (apt-get install haproxy nginx-light)", file=sys.stderr)
        return 2
    with open_proxies() as proxies:
        results = run_all(proxies, CASES)
    if args.raw:
        dump(results, args.raw)
        print(f"wrote every byte of the run to {args.raw}")
    split = [cid for cid, r in results.items() if r.verdicts["pylb"] != r.verdicts["pylb-task"]]
    if split:
        print(f"pylb's drivers disagree on {', '.join(split)}: fix that first", file=sys.stderr)
        return 1
    write(render(results, versions()))
    print(f"wrote the conformance table of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
