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

from mwsim.history import History, read_history
from mwsim.replay import Controller
from mwsim.sim.model import RuntimeModel, model_for
from mwsim.testing import scenario

MICRO = {
    "crash": """
        topology: {generator: fan_in, workers: 1}
        duration_s: 3.0
        events: [{at: 1.5, do: crash, target: w1}]
        """,
    "leave": """
        topology: {generator: fan_in, workers: 1}
        duration_s: 3.0
        events: [{at: 1.5, do: leave, target: w1}]
        """,
    "hang": """
        topology: {generator: fan_in, workers: 1}
        duration_s: 9.0
        events: [{at: 1.0, do: hang, target: w1, for_s: 7.5}]
        """,
    "add_world": """
        topology: {generator: fan_in, workers: 2}
        duration_s: 2.5
        events: [{at: 1.0, do: add_world, world: x, members: [w1, w2]}]
        """,
    "join": """
        topology: {generator: fan_in, workers: 1}
        duration_s: 7.0
        events: [{at: 1.0, do: join, worker: w2, worlds: {world2: [leader, w2]}}]
        """,
}


def _first(history: History, kind: str, **match: str):
    for e in history.of_kind(kind):
        if all(e.get(k) == v for k, v in match.items()):
            return e
    return None


def _samples(history: History, name: str, model: RuntimeModel) -> dict[str, float]:
    out: dict[str, float] = {}
    if name in ("crash", "leave"):
        fault = _first(history, "fault", do=name)
        report = _first(history, "broken", world="world1", worker="leader")
        died = _first(history, "exit", worker="w1")
        if fault and report:
            out["fail_s"] = max(0.0, report.t - fault.t - model.poll_s)
        if fault and died:
            out["kill_s" if name == "crash" else "leave_s"] = died.t - fault.t
    elif name == "hang":
        fault, report = _first(history, "fault", do="hang"), _first(history, "broken")
        if fault and report:
            out["watchdog"] = report.t - fault.t
    elif name == "add_world":
        asked, joined = _first(history, "scale"), _first(history, "joined", world="x")
        if asked and joined:
            out["init_s"] = joined.t - asked.t
    elif name == "join":
        asked, joined = _first(history, "scale"), _first(history, "joined", world="world2")
        if asked and joined:
            out["spawn_s"] = joined.t - asked.t - model.init_s
    return out


def calibrate(
    runtime: str = "multiworld",
    repeat: int = 2,
    log: Callable[[str], None] = print,
    only: tuple[str, ...] = tuple(MICRO),
) -> tuple[RuntimeModel, list[tuple[str, str, str, str]]]:
    """Run the micro-scenarios ``repeat`` times; return the fitted model and table rows."""
    current = model_for(runtime)
    found: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="mwsim-calibrate-") as tmp:
        for name in only:
            text = MICRO[name]
            micro = scenario(text, name=f"calibrate-{name}").model_copy(update={"runtime": runtime})
            for n in range(repeat):
                log(f"calibrating: {name} ({n + 1}/{repeat})")
                outcome = Controller(micro, Path(tmp) / f"{name}-{n}").run()
                if outcome.status != "completed":
                    log(f"  skipped: {outcome.reason}")
                    continue
                for key, value in _samples(read_history(outcome.history), name, current).items():
                    found.setdefault(key, []).append(value)
    fitted = current
    rows = []
    for key in ("fail_s", "kill_s", "leave_s", "init_s", "spawn_s"):
        values = found.get(key, [])
        if values:
            fitted = replace(fitted, **{key: round(statistics.median(values), 4)})
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
