"""Fit the simulator's timing model from micro-scenarios run for real (``mwsim calibrate``).

Each micro-scenario isolates one mechanism (a crashed peer, a silent peer, a join, a new
world, a leave; with emulated hosts also a silent and a resetting cut, a power-off and
the recovery after a heal) and the fitted value is the median of what the histories
show. The watchdog's periods are not fitted: they are constants of the runtime;
calibration reports whether the observed silent detections fall in the window they
imply, and how the recovery after a 1 s cut compares with TCP's back-off in the model.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from mwsim.errors import Inconclusive
from mwsim.events import Kind
from mwsim.history import (
    Broken,
    Exit,
    Fault,
    History,
    Joined,
    Op,
    Record,
    Resumed,
    Scale,
    read_history,
)
from mwsim.replay import Controller, RunStatus
from mwsim.scenario import parse_inline
from mwsim.timing import RuntimeModel, model_for

RESET, HEAL = "reset", "heal"  # a resetting cut; a 1 s silent cut healed

#: One micro-scenario per mechanism (named by the kind of event that exercises it).
MICRO: dict[str, str] = {
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
    Kind.PARTITION: """
        topology: {generator: fan_in, workers: 1, hosts: 2}
        duration_s: 9.0
        events: [{at: 1.0, do: partition, groups: [[h0], [h1]]}]
        """,
    RESET: """
        topology: {generator: fan_in, workers: 1, hosts: 2}
        duration_s: 3.0
        events: [{at: 1.0, do: partition, groups: [[h0], [h1]], mode: reset}]
        """,
    Kind.POWER_OFF: """
        topology: {generator: fan_in, workers: 1, hosts: 2}
        duration_s: 9.0
        events: [{at: 1.0, do: power_off, target: h1}]
        """,
    HEAL: """
        topology: {generator: fan_in, workers: 1, hosts: 2}
        duration_s: 5.0
        events: [{at: 1.0, do: partition, groups: [[h0], [h1]], for_s: 1.0}]
        """,
}


R = TypeVar("R", bound=Record)


def _first(history: History, kind: type[R], **match: str) -> R | None:
    for e in history.of(kind):
        if all(e.get(k) == v for k, v in match.items()):
            return e
    return None


def _samples(history: History, name: str, model: RuntimeModel) -> dict[str, float]:
    out: dict[str, float] = {}
    fault = _first(history, Fault)
    report = _first(history, Broken, world="world1", worker="leader")
    if name in (Kind.CRASH, Kind.LEAVE):
        died = _first(history, Exit, worker="w1")
        if fault and report:
            out["fail_s"] = max(0.0, report.t - fault.t - model.poll_s)
        if fault and died:
            out["kill_s" if name == Kind.CRASH else "leave_s"] = died.t - fault.t
    elif name in (Kind.HANG, Kind.PARTITION, Kind.POWER_OFF, RESET):
        if fault and report:
            out[name] = report.t - fault.t
    elif name == HEAL:
        healed = _first(history, Resumed)
        if healed is not None:
            later = [e.t for e in history.of(Op) if e.t > healed.t]
            if later:
                out[name] = min(later) - healed.t
    elif name == Kind.ADD_WORLD:
        asked, joined = _first(history, Scale), _first(history, Joined, world="x")
        if asked and joined:
            out["init_s"] = joined.t - asked.t
    elif name == Kind.JOIN:
        asked, joined = _first(history, Scale), _first(history, Joined, world="world2")
        if asked and joined:
            out["spawn_s"] = joined.t - asked.t - model.init_s
    return out


def calibrate(
    runtime: str = "multiworld",
    repeat: int = 2,
    log: Callable[[str], None] = print,
    only: tuple[str, ...] = tuple(MICRO),
) -> tuple[RuntimeModel, list[tuple[str, str, str, str]]]:
    """Run the micro-scenarios ``repeat`` times; return the fitted model and table rows.
    The network ones are skipped (and logged) where hosts cannot be emulated."""
    current = model_for(runtime)
    found: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="mwsim-calibrate-") as tmp:
        for name in only:
            micro = parse_inline(MICRO[name], name=f"calibrate-{name}")
            micro = micro.model_copy(update={"runtime": runtime})
            for n in range(repeat):
                log(f"calibrating: {name} ({n + 1}/{repeat})")
                try:
                    outcome = Controller(micro, Path(tmp) / f"{name}-{n}").run()
                except Inconclusive as exc:
                    log(f"  skipped: {exc}")
                    break
                if outcome.status is not RunStatus.COMPLETED:
                    log(f"  skipped: {outcome.reason}")
                    continue
                for key, value in _samples(read_history(outcome.history), name, current).items():
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
    windows = {
        Kind.HANG: ("watchdog delay (hang)", lo, hi),
        Kind.PARTITION: ("watchdog delay (silent cut)", lo, hi),
        Kind.POWER_OFF: ("watchdog delay (power-off)", lo, hi),
        RESET: ("resetting cut delay", *current.op_window(0.02)),
    }
    for key, (label, a, b) in windows.items():
        seen = found.get(key, [])
        inside = sum(a <= v <= b for v in seen)
        rows.append((label, f"[{a:g}, {b:g}]", f"{inside}/{len(seen)} inside", _describe(seen)))
    seen = found.get(HEAL, [])
    predicted = current.resume_after(1.0)
    bound = current.recovery_bound(1.0, 0.02)
    within = sum(v <= bound for v in seen)
    rows.append(
        (
            "resume after a 1 s cut",
            f"{predicted:g} (bound {bound:g})",
            f"{within}/{len(seen)} within",
            _describe(seen),
        )
    )
    fitted = replace(fitted, source=f"mwsim calibrate --runtime {runtime} --repeat {repeat}")
    return fitted, rows


def _describe(values: list[float]) -> str:
    if not values:
        return "none"
    return f"{len(values)}: {min(values):.3f}..{max(values):.3f} s"
