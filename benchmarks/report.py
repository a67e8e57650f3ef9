"""Turning the outcomes of a run into ratios, target verdicts, JSON, Markdown and a plot.

Owns: the pylb/HAProxy ratio of every metric, the met / not met verdict of every target, what
the notes say the proxies did (the TLS both negotiated, whether HAProxy spliced), and the files in
the results directory: `run-YYYYmmdd-HHMMSS.json` (one per run), `latest.json`, `latest.md` and
`latest.png`.
Knows nothing of processes or wrk. Invariants: a missing figure (proxy unavailable, run failed)
is shown as "n/a" and judged "not measured", never as zero and never as met.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.cases import LATENCY_METRICS, LOAD_METRICS, METRICS, Case, Outcome, Target

if TYPE_CHECKING:
    from matplotlib.axes import Axes

BASE, CANDIDATE = "haproxy", "pylb"


@dataclass(frozen=True)
class Verdict:
    target: Target
    ratio: float | None
    pylb: float | None
    met: bool | None

    @property
    def text(self) -> str:
        return {True: "met", False: "**not met**", None: "not measured"}[self.met]


@dataclass(frozen=True)
class CaseReport:
    """One case's outcomes side by side, with the ratios and target verdicts drawn from them."""

    case: Case
    results: dict[str, Outcome]

    def value(self, proxy: str, key: str) -> float | None:
        outcome = self.results.get(proxy)
        if outcome is None or outcome.error or outcome.unavailable:
            return None
        return outcome.metrics.get(key)

    @property
    def ratios(self) -> dict[str, float]:
        """pylb / HAProxy for every metric both have (where HAProxy's is not zero)."""
        out = {}
        for key in METRICS:
            base, cand = self.value(BASE, key), self.value(CANDIDATE, key)
            if base is not None and base > 0 and cand is not None:
                out[key] = cand / base
        return out

    @property
    def verdicts(self) -> list[Verdict]:
        ratios = self.ratios
        verdicts = []
        for target in self.case.targets:
            ratio, pylb = ratios.get(target.metric), self.value(CANDIDATE, target.metric)
            base = self.value(BASE, target.metric)
            verdicts.append(Verdict(target, ratio, pylb, target.met(ratio, pylb, base)))
        return verdicts

    def to_json(self) -> dict[str, object]:
        return {
            "case": asdict(self.case),
            "results": {proxy: asdict(outcome) for proxy, outcome in self.results.items()},
            "ratios": self.ratios,
            "targets": [
                {**asdict(v.target), "describe": v.target.describe(), "ratio": v.ratio, "pylb": v.pylb, "met": v.met}
                for v in self.verdicts
            ],
        }


def fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(run: dict[str, object], reports: list[CaseReport]) -> str:
    """The Markdown report: the targets table, then every figure of every case, then notes."""
    lines = [
        "# pylb vs HAProxy: side-by-side benchmark",
        "",
        f"Run {run['started']}; {run['duration_s']} s of load per proxy and case, in {run.get('slices', 1)} slices "
        f"alternating between the proxies (idle_10k: one proxy at a time); `{run['command']}`.",
        f"Environment: {run['environment']}; load average at start {run.get('load_average_at_start', '?')}.",
        "The proxies on core 1 (the one not measured idle); wrk and two nginx backends on core 0.",
        "",
        "## Targets",
        "",
        _row(["case", "target", "HAProxy", "pylb", "pylb/HAProxy", "result"]),
        "|---|---|---:|---:|---:|---|",
    ]
    for rep in reports:
        for v in rep.verdicts:
            base = fmt(rep.value(BASE, v.target.metric))
            lines.append(_row([rep.case.name, v.target.describe(), base, fmt(v.pylb), fmt_ratio(v.ratio), v.text]))
    load = [rep for rep in reports if rep.case.kind != "latency"]
    if load:
        header = ["case", "proxy", *(METRICS[key] for key in LOAD_METRICS), "errors"]
        lines += ["", "## All figures", "", "Ratios are pylb / HAProxy.", ""]
        lines += [_row(header), "|---|---|" + "---:|" * (len(header) - 2)]
        for rep in load:
            lines += _figure_rows(rep, LOAD_METRICS)
    latency = [rep for rep in reports if rep.case.kind == "latency"]
    if latency:
        header = ["case", "proxy", "first byte p50 ms", "first byte p99 ms", "total p50 ms", "total p99 ms"]
        header += ["CPU us/req", "samples", "errors"]
        lines += ["", "## What one user feels", ""]
        lines += [
            "One request at a time (benchmarks/latency.py). First byte: from the request sent (after the connect "
            "or TLS handshake) to the answer's first byte (`latency_stream`: its first body byte). Total: to "
            "the last byte, from the connect's start for a new connection. Ratios are pylb / HAProxy.",
            "",
        ]
        lines += [_row(header), "|---|---|" + "---:|" * (len(header) - 2)]
        for rep in latency:
            lines += _figure_rows(rep, LATENCY_METRICS, extra="samples")
    lines += ["", "## Notes", ""]
    lines += _notes(reports) or ["None."]
    lines += ["", "## Cases", ""]
    lines += [f"- `{r.case.name}` ({r.case.mode} mode): {r.case.measures}" for r in reports]
    return "\n".join(lines) + "\n"


def _figure_rows(rep: CaseReport, keys: tuple[str, ...], extra: str = "") -> list[str]:
    """A row per proxy with the figures `keys` (then the info `extra`, if any, and errors), and the ratios."""
    rows = []
    for proxy in (BASE, CANDIDATE):
        if proxy in rep.results:
            cells = [fmt(rep.value(proxy, key)) for key in keys]
            if extra:
                value = rep.results[proxy].info.get(extra)
                cells.append(str(value) if value is not None else "n/a")
            cells.append(fmt(rep.value(proxy, "errors")))
            rows.append(_row([rep.case.name, proxy, *cells]))
    ratios = rep.ratios
    if ratios:
        blanks = [""] * (2 if extra else 1)
        rows.append(_row(["", "*ratio*", *(fmt_ratio(ratios.get(k)) for k in keys), *blanks]))
    return rows


def error_summary(error: str) -> str:
    """First line of an error, plus the exception line of the log it quotes (if any)."""
    lines = [line.strip(" |+-") for line in error.splitlines()]
    lines = [line for line in lines if line]
    raised = [line for line in lines[1:] if re.match(r"[\w.]+(Error|Exception|Group|Exit)\b.*:", line)]
    tail = raised[-1] if raised else (lines[-1] if len(lines) > 1 else "")
    return f"{lines[0]} ... {tail}" if tail else lines[0]


def _tls_note(rep: CaseReport) -> list[str]:
    """What both proxies negotiated (tls.probe), said once when they agree, side by side when not."""
    facts = {proxy: outcome.info.get("tls") for proxy, outcome in rep.results.items()}
    described = {}
    for proxy, fact in facts.items():
        if isinstance(fact, dict):
            resume = "session tickets resume" if fact.get("tickets_resume") else "no resumption by ticket"
            described[proxy] = (
                f"{fact.get('version')}, {fact.get('cipher')}, group {fact.get('group')}, "
                f"{fact.get('signature')} certificate; {resume}"
            )
    if not described:
        return []
    where = f"- `{rep.case.name}` TLS:"
    if len(described) == len(facts) and len(set(described.values())) == 1:
        both = "both proxies" if len(described) > 1 else "the proxy"
        return [f"{where} {both} negotiated {next(iter(described.values()))}"]
    sides = "; ".join(f"{proxy}: {text}" for proxy, text in described.items())
    return [f"{where} **the proxies negotiated differently** ({sides})"]


def _haproxy_note(rep: CaseReport) -> list[str]:
    """What HAProxy's `show info` said: whether it spliced (forced splicing), how many TLS sessions it resumed."""
    outcome = rep.results.get(BASE)
    info = outcome.info.get("haproxy_show_info") if outcome else None
    if not isinstance(info, dict):
        return []
    where = f"- `{rep.case.name}` haproxy:"
    notes = []
    if "PipesUsed" in info:
        try:
            pipes = int(info["PipesUsed"]) + int(info["PipesFree"])
        except ValueError:
            pipes = -1
        if pipes > 0:
            notes.append(
                f"{where} spliced: {pipes} pipes in use or pooled after the run (`show info` PipesUsed "
                f"{info['PipesUsed']} + PipesFree {info['PipesFree']}; HAProxy takes pipes only to splice)"
            )
        else:
            how = "**did not splice**" if rep.case.splice == "forced" else "did not splice (option splice-auto)"
            notes.append(f"{where} {how}: `show info` PipesUsed {info['PipesUsed']}, PipesFree {info['PipesFree']}")
    if "SslFrontendSessionReuse_pct" in info:
        notes.append(
            f"{where} {info['CumSslConns']} TLS connections, {info['SslFrontendSessionReuse_pct']}% of the "
            "recent ones resumed a session (`show info` SslFrontendSessionReuse_pct)"
        )
    return notes


LOG_COST_TARGET = 0.10
"""pylb's access log: at most this much more CPU per request than without it."""


def _log_cost_notes(reports: list[CaseReport]) -> list[str]:
    """What each proxy's access log costs: CPU per request of an access-log case against the same
    case without the log (`small_keepalive_log` against `small_keepalive`), when both ran."""
    by_name = {rep.case.name: rep for rep in reports}
    notes = []
    for rep in reports:
        plain = by_name.get(rep.case.name.removesuffix("_log")) if rep.case.access_log else None
        if plain is None:
            continue
        costs = {}
        for proxy in (BASE, CANDIDATE):
            on, off = rep.value(proxy, "cpu_us_per_req"), plain.value(proxy, "cpu_us_per_req")
            costs[proxy] = on / off - 1 if on is not None and off else None
        pylb = costs[CANDIDATE]
        verdict = "not measured" if pylb is None else "met" if pylb <= LOG_COST_TARGET else "**not met**"
        said = ", ".join(f"{proxy} {'n/a' if c is None else f'{c:+.0%}'}" for proxy, c in costs.items())
        notes.append(
            f"- access log cost, CPU per request (`{rep.case.name}` against `{plain.case.name}`, same run): "
            f"{said}; pylb's target, at most {LOG_COST_TARGET:+.0%}: {verdict}"
        )
    return notes


def _notes(reports: list[CaseReport]) -> list[str]:
    notes = _log_cost_notes(reports)
    for rep in reports:
        notes += _tls_note(rep)
        notes += _haproxy_note(rep)
        for proxy, outcome in rep.results.items():
            where = f"- `{rep.case.name}` {proxy}:"
            if outcome.unavailable:
                notes.append(f"{where} {outcome.unavailable}")
            if outcome.error:
                notes.append(f"{where} error: {error_summary(outcome.error)}")
            if outcome.info.get("note"):
                notes.append(f"{where} {outcome.info['note']}")
            split = outcome.info.get("backend_requests")
            if isinstance(split, list) and sum(split) > 0 and min(split) < 0.2 * sum(split):
                notes.append(f"{where} uneven backend split {split}")
            if outcome.metrics.get("errors"):
                notes.append(f"{where} {outcome.metrics['errors']:.0f} errors (see JSON)")
            if outcome.info.get("tls_probe_error"):
                notes.append(f"{where} TLS probe failed: {outcome.info['tls_probe_error']}")
    return notes


def plot(reports: list[CaseReport], path: Path) -> None:
    """Bars of the pylb/HAProxy ratios per case, up or down from 1x (log scale); targets marked.

    A target mark is green when met, red when not, grey when not measured.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(13.0, 1.1 * len(reports)), 6))
    keys = list(METRICS)
    width = 0.8 / len(keys)
    labelled: set[str] = set()
    levels: list[float] = [1.0]
    for index, rep in enumerate(reports):
        ratios = rep.ratios
        for k, key in enumerate(keys):
            if key in ratios:
                label = None if key in labelled else METRICS[key]
                labelled.add(key)
                x = index - 0.4 + (k + 0.5) * width
                ax.bar(x, ratios[key] - 1.0, width, bottom=1.0, color=f"C{k}", label=label)
                levels.append(ratios[key])
        if not ratios:
            ax.text(index, 0.97, "pylb: n/a", ha="center", va="top", fontsize=8, color="grey")
        for v in rep.verdicts:
            level = _target_level(rep, v.target)
            if level is not None:
                levels.append(level)
                _mark_target(ax, index - 0.4 + (keys.index(v.target.metric) + 0.5) * width, level, v)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(reports)), [r.case.name for r in reports], rotation=20, ha="right")
    ax.set_yscale("log")
    positive = [level for level in levels if level > 0]
    ax.set_ylim(min(0.1, min(positive) / 2), max(10.0, max(positive) * 2))
    ax.set_ylabel("pylb / HAProxy (log scale; 1 = same as HAProxy)")
    ax.set_title("pylb vs HAProxy per case; target marks: green met, red not met, grey not measured")
    if labelled:
        ax.legend(fontsize=8, ncols=4, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mark_target(ax: Axes, x: float, level: float, verdict: Verdict) -> None:
    color = {True: "green", False: "red", None: "grey"}[verdict.met]
    ax.hlines(level, x - 0.09, x + 0.09, colors=color, linewidth=3)
    ax.annotate(
        verdict.target.describe(),
        (x, level),
        textcoords="offset points",
        xytext=(0, 4),
        ha="center",
        fontsize=7,
        color=color,
    )


def _target_level(rep: CaseReport, target: Target) -> float | None:
    """A target on the ratio axis; an absolute one, or one with a `plus`, is divided by HAProxy's figure."""
    if not target.absolute and not target.plus:
        return target.value
    base = rep.value(BASE, target.metric)
    bound = target.bound(base)
    return bound / base if bound is not None and base is not None and base > 0 else None


def write(run: dict[str, object], reports: list[CaseReport], out: Path) -> list[Path]:
    """Write the run's JSON (timestamped, and latest), Markdown and plot; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    document = {**run, "cases": [rep.to_json() for rep in reports]}
    text = json.dumps(document, indent=2, default=str) + "\n"
    stamp = str(run["stamp"])
    paths = [out / f"run-{stamp}.json", out / "latest.json", out / "latest.md", out / "latest.png"]
    paths[0].write_text(text)
    paths[1].write_text(text)
    paths[2].write_text(markdown(run, reports))
    plot(reports, paths[3])
    return paths
