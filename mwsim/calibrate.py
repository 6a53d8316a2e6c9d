"""Fit the simulator's timing model from micro-scenarios run for real (``mwsim calibrate``).

Each micro-scenario isolates one mechanism (a crashed peer, a silent peer, a join, a new
world, a leave) and the fitted value is the median of what the histories show. The
watchdog's periods are not fitted: they are constants of the runtime; calibration
reports whether the observed hang detections fall in the window they imply.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mwsim.events import Kind
from mwsim.history import Event, History, read_history
from mwsim.replay import Controller, RunStatus
from mwsim.scenario import parse_inline
from mwsim.timing import RuntimeModel, model_for

#: One micro-scenario per mechanism, named by the kind of event that exercises it.
MICRO = {
    Kind.CRASH: """
        topology: {generator: fan_in, workers: 1}
        duration_s: 3.0
        events: [{at: 1.5, do: crash, target: w1}]
        """,
    Kind.LEAVE: """
        topology: {generator: fan_in, workers: 1}
        duration_s: 3.0
        events: [{at: 1.5, do: leave, target: w1}]
        """,
    Kind.HANG: """
        topology: {generator: fan_in, workers: 1}
        duration_s: 9.0
        events: [{at: 1.0, do: hang, target: w1, for_s: 7.5}]
        """,
    Kind.ADD_WORLD: """
        topology: {generator: fan_in, workers: 2}
        duration_s: 2.5
        events: [{at: 1.0, do: add_world, world: x, members: [w1, w2]}]
        """,
    Kind.JOIN: """
        topology: {generator: fan_in, workers: 1}
        duration_s: 7.0
        events: [{at: 1.0, do: join, worker: w2, worlds: {world2: [leader, w2]}}]
        """,
}


def _first(history: History, kind: str, **match: str) -> Event | None:
    for e in history.of_kind(kind):
        if all(e.get(k) == v for k, v in match.items()):
            return e
    return None


def _samples(history: History, kind: Kind, model: RuntimeModel) -> dict[str, float]:
    out: dict[str, float] = {}
    if kind in (Kind.CRASH, Kind.LEAVE):
        fault = _first(history, "fault", do=kind.value)
        report = _first(history, "broken", world="world1", worker="leader")
        died = _first(history, "exit", worker="w1")
        if fault and report:
            out["fail_s"] = max(0.0, report.t - fault.t - model.poll_s)
        if fault and died:
            out["kill_s" if kind is Kind.CRASH else "leave_s"] = died.t - fault.t
    elif kind is Kind.HANG:
        fault, report = _first(history, "fault", do=kind.value), _first(history, "broken")
        if fault and report:
            out["watchdog"] = report.t - fault.t
    elif kind is Kind.ADD_WORLD:
        asked, joined = _first(history, "scale"), _first(history, "joined", world="x")
        if asked and joined:
            out["init_s"] = joined.t - asked.t
    elif kind is Kind.JOIN:
        asked, joined = _first(history, "scale"), _first(history, "joined", world="world2")
        if asked and joined:
            out["spawn_s"] = joined.t - asked.t - model.init_s
    return out


def calibrate(
    runtime: str = "multiworld",
    repeat: int = 2,
    log: Callable[[str], None] = print,
    only: tuple[Kind | str, ...] = tuple(MICRO),
) -> tuple[RuntimeModel, list[tuple[str, str, str, str]]]:
    """Run the micro-scenarios ``repeat`` times; return the fitted model and table rows."""
    current = model_for(runtime)
    found: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="mwsim-calibrate-") as tmp:
        for kind in map(Kind, only):
            micro = parse_inline(MICRO[kind], name=f"calibrate-{kind}")
            micro = micro.model_copy(update={"runtime": runtime})
            for n in range(repeat):
                log(f"calibrating: {kind} ({n + 1}/{repeat})")
                outcome = Controller(micro, Path(tmp) / f"{kind}-{n}").run()
                if outcome.status is not RunStatus.COMPLETED:
                    log(f"  skipped: {outcome.reason}")
                    continue
                for key, value in _samples(read_history(outcome.history), kind, current).items():
                    found.setdefault(key, []).append(value)
    fitted = current
    rows = []
    for key in ("fail_s", "kill_s", "leave_s", "init_s", "spawn_s"):
        values = found.get(key, [])
        if values:
            change: dict[str, Any] = {key: round(statistics.median(values), 4)}
            fitted = replace(fitted, **change)
        rows.append(
            (key, f"{getattr(current, key):g}", f"{getattr(fitted, key):g}", _describe(values))
        )
    lo, hi = current.watchdog_window()
    seen = found.get("watchdog", [])
    inside = sum(lo <= v <= hi for v in seen)
    rows.append(
        ("watchdog delay", f"[{lo:g}, {hi:g}]", f"{inside}/{len(seen)} inside", _describe(seen))
    )
    fitted = replace(fitted, source=f"mwsim calibrate --runtime {runtime} --repeat {repeat}")
    return fitted, rows


def _describe(values: list[float]) -> str:
    if not values:
        return "none"
    return f"{len(values)}: {min(values):.3f}..{max(values):.3f} s"
