"""What an Outcome looks like to people and tools: a verdict table, the JSON report
(README "mwsim run"), a timeline PNG and a Perfetto / Chrome trace of the same run.
World rows come from the scenario's plan, events are placed on them by the plan's one
rule (``Plan.resolve``), and fault spans come from the facts the checks read."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.table import Table

from mwsim import checks
from mwsim.checks import FAIL, PASS, UNKNOWN, Facts, Verdict
from mwsim.events import FAULTS, Kind
from mwsim.history import History, Mode
from mwsim.membership import Plan
from mwsim.runs import ModeRun, Outcome

STYLE = {PASS: "green", FAIL: "bold red", UNKNOWN: "yellow"}


# -- terminal -----------------------------------------------------------------------------


def verdict_table(outcome: Outcome) -> Table:
    """One row per property: verdict, world, one line of evidence."""
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
        table.add_row(v.name, f"[{style}]{shown}[/]", v.world or "", v.detail)
    return table


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
    if run.logs is not None:
        out["logs"] = str(run.logs)
    return out


def report_dict(outcome: Outcome) -> dict[str, Any]:
    """The JSON report (`mwsim run --json`, README "A short tour")."""
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
    if outcome.artifacts:
        out["artifacts"] = {k: str(v) for k, v in outcome.artifacts.items()}
    return out


def write_json(outcomes: list[Outcome], path: str | Path) -> None:
    """One object for one scenario, a list for several."""
    data = [report_dict(o) for o in outcomes]
    Path(path).write_text(json.dumps(data[0] if len(data) == 1 else data, indent=2) + "\n")


def write_fuzz_report(violation: Any, path: str | Path, mode: str) -> Path:
    """The report of a fuzzing find, in the shape of the JSON report."""
    data = {
        "scenario": violation.scenario.name,
        "mode": mode,
        "verdict": FAIL,
        "properties": [v.to_dict() for v in violation.verdicts],
        "runtime": violation.scenario.runtime,
        "events": len(violation.scenario.events),
        "scenario_file": str(violation.path),
    }
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)


# -- shared view of a history -------------------------------------------------------------


def _labels(plan: Plan) -> list[str]:
    return [plan.label(life) for life in plan.worlds]


def _row(plan: Plan, world: str, t: float, life: int | None) -> int | None:
    """The row of the world incarnation a history event names (None: not of this plan)."""
    found = plan.resolve(world, life, t)
    return None if found is None else plan.row(found.id)


def _facts(outcome: Outcome, run: ModeRun) -> Facts:
    return run.facts or checks.facts(run.history, outcome.scenario)


def _op_times(history: History) -> dict[tuple[str, int | None], list[float]]:
    """Op instants per (world, life); spans are spread evenly."""
    out: dict[tuple[str, int | None], list[float]] = defaultdict(list)
    for e in history:
        if e.kind == "op":
            out[(e["world"], e.get("life"))].append(e.t)
        elif e.kind == "ops":
            n = e["last"] - e["first"] + 1
            step = (e.t - e["t0"]) / (n - 1) if n > 1 else 0.0
            out[(e["world"], e.get("life"))] += [e["t0"] + k * step for k in range(min(n, 20000))]
    return out


# -- timeline PNG -------------------------------------------------------------------------


def _colour(do: str) -> str:
    """How a kind of event is drawn (grey for kinds this mwsim does not know)."""
    try:
        return Kind(do).info.colour
    except ValueError:
        return "grey"


def _marker(ax: Any, t: float, label: str, colour: str, rows: int, solid: bool) -> None:
    """A vertical line at ``t`` labelled along its top: solid for faults, dashed for scaling."""
    ax.axvline(t, color=colour, linewidth=1.6 if solid else 1.2, linestyle="-" if solid else "--")
    top = rows - 0.05
    ax.text(t, top, f" {label}", color=colour, fontsize=7, rotation=90, va="top", ha="right")


def _draw(ax: Any, outcome: Outcome, run: ModeRun, labels: list[str]) -> None:
    import numpy as np

    duration = outcome.scenario.duration_s
    plan = outcome.scenario.plan
    bins = np.linspace(0.0, duration, max(50, min(400, int(duration * 10))) + 1)
    width = bins[1] - bins[0]
    for (world, life), times in _op_times(run.history).items():
        if not times:
            continue
        row = _row(plan, world, times[0], life)
        if row is None:
            continue
        counts, _ = np.histogram(times, bins=bins)
        rate = counts / width
        top = rate.max() or 1.0
        ax.fill_between(
            bins[:-1],
            row,
            row + 0.8 * rate / top,
            step="post",
            color="#4c9a2a",
            alpha=0.85,
            linewidth=0,
        )
    for injected in _facts(outcome, run).faults.values():  # a hang or slow over its worlds
        step = injected.step
        if not step.event.info.lasting or not injected.confirmed:
            continue
        end = injected.end if injected.end is not None else duration
        for row, lived in enumerate(plan.worlds):
            if any(span.event == step.index for span in lived.spans):
                colour = step.event.info.colour
                ax.fill_between(
                    [injected.t, end], row, row + 1, color=colour, alpha=0.22, linewidth=0
                )
    for e in run.history.of_kind("fault"):
        colour = _colour(e["do"])
        _marker(ax, e.t, f"{e['do']} {e['target']}", colour, len(labels), solid=True)
    for e in run.history.of_kind("scale"):
        name = e.get("world") or e.get("worker")
        _marker(ax, e.t, f"{e['do']} {name}", _colour(e["do"]), len(labels), solid=False)
    for e in run.history.of_kind("broken"):
        if e.t > duration:
            continue
        row = _row(plan, e["world"], e.t, e.get("life"))
        if row is None:
            continue
        if "window" in e.attrs:
            lo, hi = e["window"]
            ax.plot([lo, hi], [row + 0.9, row + 0.9], color="black", linewidth=1)
        ax.plot(e.t, row + 0.4, marker="X", color="black", markersize=8)
    ax.set_ylim(0, len(labels))
    ax.set_yticks([i + 0.4 for i in range(len(labels))], labels, fontsize=8)
    ax.set_xlim(min(0.0, -0.5), duration)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{run.mode}: {run.verdict.upper()}", fontsize=10, loc="left")


def timeline_png(outcome: Outcome, path: str | Path) -> Path:
    """Per world: op rate over time (green), faults and scale events by kind, detection
    instants (X) and, for the model, predicted windows. Which worlds stopped and which
    kept going shows at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    labels = _labels(outcome.scenario.plan)
    runs = sorted(outcome.runs, key=lambda r: r.mode != Mode.REAL)  # the real run on top
    height = 1.6 + len(runs) * (0.7 + 0.3 * len(labels))
    fig, axes = plt.subplots(len(runs), 1, figsize=(11, height), sharex=True, squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        _draw(ax, outcome, run, labels)
    axes[-1, 0].set_xlabel("seconds since the workload started")
    handles: list[Any] = [Patch(color="#4c9a2a", label="op rate (per world, scaled)")]
    for kind in Kind:
        style = "-" if kind in FAULTS else "--"
        handles.append(Line2D([], [], color=kind.info.colour, linestyle=style, label=kind))
    handles.append(Line2D([], [], marker="X", color="black", linestyle="", label="reported broken"))
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle(f"{outcome.scenario.name}: {outcome.verdict.upper()}", fontsize=12)
    fig.tight_layout(rect=(0, 0.7 / height, 1, 1 - 0.3 / height))
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# -- Perfetto / Chrome trace --------------------------------------------------------------


def trace_dict(outcome: Outcome) -> dict[str, Any]:
    """Chrome trace events: a process per mode, a thread per world; op-rate counters,
    fault spans and instants, broken reports."""
    plan = outcome.scenario.plan
    labels = _labels(plan)
    events: list[dict[str, Any]] = []
    times = [e.t for run in outcome.runs for e in run.history]
    origin = min([0.0, *times])

    def us(t: float) -> float:
        return round((t - origin) * 1e6, 1)

    for pid, run in enumerate(outcome.runs, start=1):
        events.append({"ph": "M", "pid": pid, "name": "process_name", "args": {"name": run.mode}})
        for tid, label in enumerate(labels, start=1):
            events.append(
                {"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": label}}
            )
        for (world, life), ts in _op_times(run.history).items():
            row = _row(plan, world, ts[0], life) if ts else None
            if row is None:
                continue
            per_second: dict[int, int] = defaultdict(int)
            for t in ts:
                per_second[int(t * 4)] += 1
            for quarter, n in sorted(per_second.items()):
                events.append(
                    {
                        "ph": "C",
                        "pid": pid,
                        "name": f"ops/s {labels[row]}",
                        "ts": us(quarter / 4),
                        "args": {"ops": n * 4},
                    }
                )
        for e in run.history:
            if e.kind in ("fault", "resumed", "scale", "phase"):
                name = e.get("do") or e.get("name")
                target = e.get("target") or e.get("worker") or e.get("world") or ""
                events.append(
                    {
                        "ph": "i",
                        "s": "p",
                        "pid": pid,
                        "ts": us(e.t),
                        "name": f"{e.kind} {name} {target}".strip(),
                        "args": dict(e.attrs),
                    }
                )
            elif e.kind in ("broken", "joined", "left"):
                row = _row(plan, e["world"], e.t, e.get("life"))
                if row is None:
                    continue
                events.append(
                    {
                        "ph": "i",
                        "s": "t",
                        "pid": pid,
                        "tid": row + 1,
                        "ts": us(e.t),
                        "name": f"{e.kind} by {e['worker']}",
                        "args": dict(e.attrs),
                    }
                )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "metadata": {"scenario": outcome.scenario.name, "t0_us": us(0.0)},
    }


def write_artifacts(outcome: Outcome) -> dict[str, Path]:
    """report.json, timeline.png and trace.json in the outcome's directory."""
    out = outcome.out_dir
    out.mkdir(parents=True, exist_ok=True)
    outcome.artifacts = {
        "timeline": timeline_png(outcome, out / "timeline.png"),
        "trace": out / "trace.json",
        "report": out / "report.json",
    }
    (out / "trace.json").write_text(json.dumps(trace_dict(outcome)) + "\n")
    write_json([outcome], out / "report.json")
    return outcome.artifacts


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
