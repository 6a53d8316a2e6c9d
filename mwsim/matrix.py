"""A version matrix: the same scenarios replayed on several runtimes or environments, side
by side (``mwsim matrix``): "does the next torch break us?".

A *target* is a runtime in an environment: ``multiworld`` (here), ``torch``,
``multiworld@/path/to/venv/bin/python`` (the ``mwsim`` installed beside another torch), or
with a label, ``label=runtime@python``. Each target replays every scenario for real (one
``mwsim run --real --json`` in its environment), and the matrix compares what each saw:
the overall verdict, the properties violated, the broken worlds, and each detection's
latency class (how it was seen: at once by an op or the store, by the watchdog, late, or
never). Targets *agree* on a scenario when all of that is the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwsim.errors import Problem, ProblemError
from mwsim.scenario import Scenario
from mwsim.timing import model_for

#: How long one target may take to replay all its scenarios, beyond their durations.
OVERHEAD_S = 120.0


@dataclass(frozen=True)
class Target:
    """A runtime in an environment (``python``: its interpreter; None: this one)."""

    label: str
    runtime: str
    python: str | None = None

    @property
    def interpreter(self) -> str:
        return self.python or sys.executable


def parse_target(spec: str) -> Target:
    """``runtime``, ``runtime@python`` or ``label=runtime[@python]``; ``ProblemError``
    (``<target>:1``) if it is none of these."""
    label, _, rest = spec.rpartition("=") if "=" in spec else ("", "", spec)
    runtime, _, python = rest.partition("@")
    if not runtime or (("@" in rest) and not python) or ("=" in spec and not label):
        raise ProblemError(
            [Problem("<target>", 1, f"{spec!r}: use runtime, runtime@python or label=...")]
        )
    if python and not Path(python).is_file():
        raise ProblemError([Problem("<target>", 1, f"{spec!r}: no interpreter at {python}")])
    return Target(label or (f"{runtime}@{python}" if python else runtime), runtime, python or None)


@dataclass
class Cell:
    """What one target saw on one scenario."""

    verdict: str  # pass | fail | unknown | not run
    failed: list[str] = field(default_factory=list)  # properties violated (not expected)
    expected: list[str] = field(default_factory=list)  # ... violated, as the scenario expects
    broken: list[str] = field(default_factory=list)
    detections: list[tuple[str, str, str]] = field(default_factory=list)  # world, worker, class
    note: str = ""  # why it was not run, or how bring-up failed


@dataclass
class Column:
    """One target's environment, as its runs recorded it."""

    target: Target
    runtime_package: dict[str, Any] = field(default_factory=dict)
    torch: str = ""
    cells: dict[str, Cell] = field(default_factory=dict)  # by scenario name
    error: str = ""  # the target could not run at all

    @property
    def heading(self) -> str:
        pkg = self.runtime_package
        what = " ".join(str(pkg[k]) for k in ("package", "version") if k in pkg)
        how = f", {pkg['path']}" if "path" in pkg else ""
        torch = f" on torch {self.torch}" if self.torch else ""
        return f"{self.target.label}" + (f" ({what}{torch}{how})" if what or torch else "")


def latency_class(latency: float | None, interval_s: float) -> str:
    """How a detection was made, from its latency: ``op`` (at once: an op or the store),
    ``watchdog`` (within the watchdog's window), ``late`` or ``never``."""
    if latency is None:
        return "never"
    model = model_for("multiworld")
    if latency <= max(model.op_window(interval_s)[1], model.store_window()[1]):
        return "op"
    if latency <= model.watchdog_window()[1]:
        return "watchdog"
    return "late"


def cell_of(report: dict[str, Any], interval_s: float) -> Cell:
    """A scenario's cell from its JSON report (``mwsim run --json``)."""
    failing = [p for p in report["properties"] if p["verdict"] == "fail"]
    failed = sorted(p["name"] for p in failing if not p.get("expected"))
    expected = sorted(p["name"] for p in failing if p.get("expected"))
    detections = sorted(
        (d["world"], d["worker"], latency_class(d.get("latency_s"), interval_s))
        for d in report.get("detections", [])
    )
    notes = [r["bringup"]["headline"] for r in report.get("runs", []) if "bringup" in r]
    broken = sorted(report["broken_worlds"])
    return Cell(report["verdict"], failed, expected, broken, detections, *notes[:1])


def run_target(
    target: Target, files: Sequence[Path], out: Path, timeout_s: float
) -> tuple[Column, dict[str, Any]]:
    """Replay every file for real on ``target`` (one ``mwsim run`` in its environment)."""
    where = out / _safe(target.label)
    where.mkdir(parents=True, exist_ok=True)
    report = where / "report.json"
    command = [target.interpreter, "-m", "mwsim.cli", "run", *map(str, files), "--real"]
    command += ["--runtime", target.runtime, "--out", str(where), "--json", str(report)]
    column = Column(target)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        column.error = f"did not run: {exc}"
        return column, {}
    (where / "output.txt").write_text(done.stdout + done.stderr)
    if not report.exists():
        last = (done.stdout + done.stderr).strip().splitlines() or [f"exit {done.returncode}"]
        column.error = last[-1][:300]
        return column, {}
    data = json.loads(report.read_text())
    # its "scenarios"; a list or one report from an mwsim older than that shape
    reports = data if isinstance(data, list) else data.get("scenarios", [data])
    by_name = {r["scenario"]: r for r in reports}
    return column, {"reports": by_name, "output": done.stdout}


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def _meta(report: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The runtime package and torch version a report's real run recorded."""
    for run in report.get("runs", []):
        if run.get("mode") == "real":
            return dict(run.get("runtime_package") or {}), str(run.get("torch", ""))
    return {}, ""


@dataclass
class Matrix:
    """Scenarios by targets; ``agree[name]`` lists what differs between targets."""

    scenarios: list[str]
    columns: list[Column]
    agree: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "targets": [
                {
                    "label": c.target.label,
                    "runtime": c.target.runtime,
                    "python": c.target.interpreter,
                    "runtime_package": c.runtime_package,
                    "torch": c.torch,
                    "error": c.error or None,
                }
                for c in self.columns
            ],
            "scenarios": {
                name: {
                    "cells": {
                        c.target.label: vars(c.cells[name]) if name in c.cells else None
                        for c in self.columns
                    },
                    "differences": self.agree.get(name, []),
                }
                for name in self.scenarios
            },
        }


def differences(cells: Sequence[Cell], labels: Sequence[str]) -> list[str]:
    """What differs between the targets' cells of one scenario (empty: they agree)."""
    if len(cells) < 2:
        return []
    first, label = cells[0], labels[0]
    out = []
    for other, name in zip(cells[1:], labels[1:], strict=True):
        for what in ("verdict", "failed", "expected", "broken", "detections"):
            a, b = getattr(first, what), getattr(other, what)
            if a != b:
                out.append(f"{what}: {label} {a!r}, {name} {b!r}")
    return out


def run_matrix(
    files: Sequence[Path],
    scenarios: Sequence[Scenario],
    targets: Sequence[Target],
    out: Path,
    on_target: Callable[[Column], None] | None = None,
) -> Matrix:
    """Replay ``files`` (their ``scenarios``, loaded) on every target and compare them."""
    timeout = sum(s.duration_s for s in scenarios) * 2 + OVERHEAD_S * max(1, len(files))
    names = [s.name for s in scenarios]
    columns = []
    for target in targets:
        column, found = run_target(target, files, out, timeout)
        reports = found.get("reports", {})
        for scenario in scenarios:
            name = scenario.name
            if name in reports:
                column.cells[name] = cell_of(reports[name], scenario.op_interval_s)
                if not column.runtime_package:
                    column.runtime_package, column.torch = _meta(reports[name])
            else:
                said = [
                    line.strip()
                    for line in found.get("output", "").splitlines()
                    if line.strip().startswith(f"{name}:")
                ]
                column.cells[name] = Cell("not run", note=(said or [column.error])[0][:300])
        columns.append(column)
        if on_target is not None:
            on_target(column)
    matrix = Matrix(names, columns)
    labels = [c.target.label for c in columns]
    for name in names:
        matrix.agree[name] = differences([c.cells[name] for c in columns], labels)
    return matrix
