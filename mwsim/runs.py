"""One scenario from start to verdict: simulate and/or replay, then judge.

scenario -> simulator | real replay -> History -> checks -> ``Outcome``. Reporting reads an
Outcome; nothing here prints or draws. ``both`` runs the model first (it is fast and gives
the prediction), then the real deployment, and adds ``conformance``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mwsim import checks
from mwsim.checks import UNKNOWN, Verdict
from mwsim.history import History, read_history, write_history
from mwsim.scenario import Scenario, parse_scenario
from mwsim.sim import RuntimeModel, simulate

MODES = ("sim", "real", "both")
Progress = Callable[[float, float, dict[str, int]], None]


@dataclass
class ModeRun:
    """The simulated or the real run of a scenario, judged."""

    mode: str  # sim | real
    history_path: Path
    history: History
    verdict: str
    verdicts: list[Verdict]
    broken_worlds: list[str]
    detections: list[dict]
    status: str = "completed"
    reason: str = ""
    logs: Path | None = None
    raw: list[Verdict] = field(default_factory=list)  # before expected violations are applied


@dataclass
class Outcome:
    """Everything a report needs about one scenario run."""

    scenario: Scenario
    mode: str  # sim | real | both
    verdict: str
    verdicts: list[Verdict]
    runs: list[ModeRun]
    out_dir: Path
    artifacts: dict[str, Path] = field(default_factory=dict)

    def run(self, mode: str) -> ModeRun | None:
        return next((r for r in self.runs if r.mode == mode), None)

    @property
    def primary(self) -> ModeRun:
        """The run the top-level facts come from: the real one when there is one."""
        return self.run("real") or self.runs[0]


def with_overrides(
    scenario: Scenario, runtime: str | None = None, backend: str | None = None
) -> Scenario:
    """The scenario with ``--runtime`` / ``--backend`` applied, validated again
    (``ProblemError`` if, say, nccl meets a host without GPUs)."""
    update = {k: v for k, v in (("runtime", runtime), ("backend", backend)) if v}
    if not update:
        return scenario
    data = scenario.model_dump(mode="json")
    data.update(update)
    return parse_scenario(yaml.safe_dump(data, sort_keys=False), f"<{scenario.name} {update}>")


def judge(history: History, scenario: Scenario, mode: str, path: Path, model=None) -> ModeRun:
    """Judge one history (mode sim or real) by every property but conformance."""
    verdicts = checks.check(history, scenario, model)
    overall, marked = checks.judge(verdicts, checks.expected_violations(scenario, mode))
    f = checks.facts(history, scenario, model)
    return ModeRun(
        mode,
        path,
        history,
        overall,
        marked,
        checks.broken_worlds(f),
        checks.detections(f),
        raw=verdicts,
    )


def _not_run(scenario: Scenario, mode: str, path: Path, reason: str) -> ModeRun:
    history = read_history(path) if path.exists() else History([])
    verdicts = [Verdict(name, UNKNOWN, reason) for name in checks.CHECKS]
    return ModeRun(mode, path, history, UNKNOWN, verdicts, [], [], "not_run", reason, raw=verdicts)


def run_scenario(
    scenario: Scenario,
    *,
    mode: str = "both",
    out_dir: str | Path,
    model: RuntimeModel | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
    bringup_timeout_s: float = 90.0,
    zygote: Any = None,
) -> Outcome:
    """Run ``scenario`` in ``mode`` and judge it; histories land under ``out_dir``.

    A real run needs its runtime here: ``replay.Inconclusive`` is raised, before anything
    starts, when it cannot run.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    out = Path(out_dir)
    runs: list[ModeRun] = []
    predicted = None
    if mode in ("sim", "both"):
        predicted = simulate(scenario, seed=seed, model=model)
        path = out / "sim" / "history.jsonl"
        write_history(path, predicted)
        runs.append(judge(predicted, scenario, "sim", path, model))
    if mode in ("real", "both"):
        from mwsim.replay import Controller

        controller = Controller(
            scenario,
            out / "real",
            progress=progress,
            bringup_timeout_s=bringup_timeout_s,
            zygote=zygote,
        )
        real = controller.run()
        if real.status != "completed":
            run = _not_run(scenario, "real", real.history, f"real run {real.status}: {real.reason}")
        else:
            run = judge(read_history(real.history), scenario, "real", real.history, model)
        run.logs = real.logs
        runs.append(run)
    return _outcome(scenario, mode, runs, out, predicted, model)


def _outcome(scenario, mode, runs, out, predicted, model) -> Outcome:
    if mode != "both":
        return Outcome(scenario, mode, runs[0].verdict, runs[0].verdicts, runs, out)
    real = next(r for r in runs if r.mode == "real")
    if real.status == "completed" and predicted is not None:
        conformance = checks.check_conformance(real.history, predicted, scenario, model)
    else:
        conformance = Verdict("conformance", UNKNOWN, real.reason or "no real history")
    overall, marked = checks.judge(
        [*real.raw, conformance], checks.expected_violations(scenario, "both")
    )
    if real.status != "completed":
        overall = UNKNOWN
    return Outcome(scenario, mode, overall, marked, runs, out)


def recheck(history_path: str | Path, scenario: Scenario, model=None) -> Outcome:
    """Judge a stored history again (``mwsim check``): the same verdicts as its run."""
    path = Path(history_path)
    history = read_history(path)
    meta = history.meta
    mode = "sim" if meta is not None and meta.get("mode") == "sim" else "real"
    run = judge(history, scenario, mode, path, model)
    return Outcome(scenario, mode, run.verdict, run.verdicts, [run], path.parent)
