"""What an Outcome looks like to people and tools: a verdict table, the JSON report
(docs/cli.md), and the artifacts of a run: the JSON report, the timeline PNG
(``mwsim.timeline``) and the Perfetto / Chrome trace (``mwsim.trace``). World rows come
from the scenario's plan, events are placed on them by the plan's one rule
(``Plan.resolve``), and fault spans come from the facts the checks read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from mwsim.checks import FAIL, PASS, UNKNOWN, Verdict, bringup_failure
from mwsim.history import Cause, Mode
from mwsim.internal import jsonout
from mwsim.internal.alongside import alongside
from mwsim.runs import ModeRun, Outcome
from mwsim.timeline import timeline_png
from mwsim.trace import trace_dict, write_trace

STYLE = {PASS: "green", FAIL: "bold red", UNKNOWN: "yellow"}


# -- terminal -----------------------------------------------------------------------------


def verdict_table(outcome: Outcome, verbose: bool = False) -> Table:
    """One row per property: verdict, world, one line of evidence (``verbose``: every
    problem's line where there were several)."""
    mode = outcome.mode
    title = f"{outcome.scenario.name} ({mode}): {outcome.verdict.upper()}"
    table = Table(title=title, title_style=STYLE[outcome.verdict], expand=False)
    table.add_column("property")
    table.add_column("verdict")
    table.add_column("world")
    table.add_column("evidence", overflow="fold")
    for v in outcome.verdicts:
        shown = f"{v.verdict} (expected)" if v.expected else v.verdict
        style = "green" if v.expected else STYLE[v.verdict]
        detail = "\n".join(v.problems) if verbose and v.problems else v.detail
        table.add_row(v.name, f"[{style}]{shown}[/]", v.world or "", escape(detail))
    captions = []
    for number, what in known_findings(outcome):
        captions.append(f"runs into known upstream finding {number}: {what} (docs/findings.md)")
    if mode == Mode.BOTH:  # which run each row judges
        captions.append("the real run's properties; conformance: the real run against the model's")
    failed = _bringup(outcome.primary)
    if failed is not None:
        whose = "the harness's" if failed["cause"] == Cause.HARNESS else "the runtime's"
        caption = f"bring-up failed ({failed['stage']} stage, {whose} doing): {failed['headline']}"
        if "reference" in failed:
            caption += f"; {failed['reference']}"
        captions.append(caption)
    if outcome.costs:
        priced = "; ".join(c.line() for c in outcome.costs)
        captions.append(f"what each fault cost (the model with and without it): {priced}")
    if not verbose and any(v.problems for v in outcome.verdicts):
        captions.append("(and N more): -v lists every problem, as the JSON report's problems do")
    if captions:
        table.caption = escape("\n".join(captions))
    return table


def known_findings(outcome: Outcome) -> list[tuple[int | str, str]]:
    """The known upstream findings a failed real run's events run into, with their words."""
    from mwsim import runtimes
    from mwsim.findings import FINDINGS

    numbers = outcome.known_findings()
    if not numbers:
        return []
    words = runtimes.load(outcome.scenario.runtime).known_findings
    return [(n, words.get(n) or FINDINGS.get(n, "")) for n in numbers]


def _bringup(run: ModeRun) -> dict[str, Any] | None:
    return bringup_failure(run.facts) if run.facts is not None else None


# -- JSON ---------------------------------------------------------------------------------


def _run_dict(run: ModeRun) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mode": run.mode,
        "verdict": run.verdict,
        "status": run.status,
        "properties": [v.to_dict() for v in run.verdicts],
        "broken_worlds": run.broken_worlds,
        "detections": run.detections,
        "history": str(run.history_path),
    }
    if run.reason:
        out["reason"] = run.reason
    failed = _bringup(run)
    if failed is not None:
        out["bringup"] = failed
    meta = run.history.meta
    if run.mode == Mode.REAL and meta is not None:  # what ran: the runtime's build, torch's
        for key in ("runtime_package", "torch"):
            if key in meta.attrs:
                out[key] = meta[key]
    if run.logs is not None:
        out["logs"] = str(run.logs)
    return out


def report_dict(outcome: Outcome) -> dict[str, Any]:
    """The JSON report (`mwsim run --json`, docs/cli.md)."""
    primary = outcome.primary
    out: dict[str, Any] = {
        "scenario": outcome.scenario.name,
        "mode": outcome.mode,
        "verdict": outcome.verdict,
        "properties": [v.to_dict() for v in outcome.verdicts],
        "broken_worlds": primary.broken_worlds,
        "detections": primary.detections,
        "runs": [_run_dict(r) for r in outcome.runs],
    }
    if outcome.costs:
        out["fault_costs"] = [c.to_dict() for c in outcome.costs]
    found = known_findings(outcome)
    if found:
        out["known_findings"] = [{"finding": n, "what": what} for n, what in found]
    if outcome.artifacts:
        out["artifacts"] = {k: str(v) for k, v in outcome.artifacts.items()}
    return out


def inconclusive_dict(name: str, mode: Mode, reason: str) -> dict[str, Any]:
    """The JSON report of a scenario mwsim could not run (the harness's own failure)."""
    return {
        "scenario": name,
        "mode": mode,
        "verdict": UNKNOWN,
        "reason": reason,
        "properties": [],
        "broken_worlds": [],
        "detections": [],
        "runs": [],
    }


def json_document(reports: list[dict[str, Any]], mode: Mode) -> dict[str, Any]:
    """The ``--json`` file: always one object with ``mode``, ``verdict`` (the worst) and
    ``scenarios`` (one report each, in order); with one scenario its report's own keys are
    also at the top (docs/cli.md, "The JSON report")."""
    verdicts = {r["verdict"] for r in reports}
    worst = next((v for v in (FAIL, UNKNOWN) if v in verdicts), PASS)
    top = dict(reports[0]) if len(reports) == 1 else {"mode": mode, "verdict": worst}
    return {**top, "scenarios": reports}


def write_reports(reports: list[dict[str, Any]], mode: Mode, path: str | Path) -> None:
    """The ``--json`` file of these scenario reports (``report_dict``, ``inconclusive_dict``)."""
    Path(path).write_text(jsonout.dumps(json_document(reports, mode), indent=True) + "\n")


def write_json(outcomes: list[Outcome], path: str | Path) -> None:
    """The ``--json`` file of these outcomes (one or more)."""
    write_reports([report_dict(o) for o in outcomes], outcomes[0].mode, path)


def write_fuzz_report(
    violation: Any, path: str | Path, mode: str, reproduce: list[str] | None = None
) -> Path:
    """The report of a fuzzing find, in the shape of the JSON report, with the commands
    that replay it (``reproduce``)."""
    data = {
        "scenario": violation.scenario.name,
        "mode": mode,
        "verdict": FAIL,
        "properties": [v.to_dict() for v in violation.verdicts],
        "runtime": violation.scenario.runtime,
        "events": len(violation.scenario.events),
        "scenario_file": str(violation.path),
        "reproduce": reproduce or [],
    }
    Path(path).write_text(jsonout.dumps(data, indent=True) + "\n")
    return Path(path)


def write_artifacts(outcome: Outcome) -> dict[str, Path]:
    """report.json, timeline.png and trace.json in the outcome's directory."""
    out = outcome.out_dir
    out.mkdir(parents=True, exist_ok=True)
    paths = {"timeline": out / "timeline.png", "trace": out / "trace.json"}
    outcome.artifacts = {**paths, "report": out / "report.json"}
    # the trace in a child (where one can run) while the picture is drawn here
    size = sum(len(run.history) for run in outcome.runs)
    with alongside(lambda: write_trace(outcome, paths["trace"]), size):
        timeline_png(outcome, paths["timeline"])
        write_json([outcome], outcome.artifacts["report"])
    return outcome.artifacts


def runtime_line(outcome: Outcome) -> str | None:
    """What the real run ran on, in words ("multiworld 0.2.3 on torch 2.13.0, mwsim worlds
    layer"); None without a real run."""
    real = outcome.run(Mode.REAL)
    meta = real.history.meta if real is not None else None
    if meta is None:
        return None
    pkg = meta.get("runtime_package") or {}
    what = " ".join(str(pkg[k]) for k in ("package", "version") if k in pkg) or meta["runtime"]
    torch = f" on torch {meta['torch']}" if meta.get("torch") else ""
    path = f" ({pkg['path']})" if pkg.get("path") else ""
    return f"runtime {meta.get('runtime')}: {what}{torch}{path}"


def summary_line(outcome: Outcome) -> str:
    failed = [v.name for v in outcome.verdicts if v.verdict == FAIL and not v.expected]
    text = f"{outcome.scenario.name}: {outcome.verdict}"
    return text + (f" ({', '.join(failed)} violated)" if failed else "")


__all__ = [
    "Verdict",
    "report_dict",
    "summary_line",
    "timeline_png",
    "trace_dict",
    "verdict_table",
    "write_artifacts",
    "write_json",
]
