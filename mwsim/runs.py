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
from mwsim.checks import UNKNOWN, Facts, Result, Verdict
from mwsim.history import History, Mode, read_history, write_history
from mwsim.internal.alongside import alongside
from mwsim.replay import Controller, RunStatus
from mwsim.replay.zygote import Zygote
from mwsim.scenario import Scenario, parse_scenario
from mwsim.sim import simulate
from mwsim.timing import RuntimeModel

Progress = Callable[[float, float, dict[str, int]], None]


@dataclass
class ModeRun:
    """The simulated or the real run of a scenario, judged."""

    mode: Mode  # sim | real
    history_path: Path
    history: History
    verdict: Result
    verdicts: list[Verdict]
    broken_worlds: list[str]
    detections: list[dict[str, Any]]
    facts: Facts | None = None  # what the checks read (None: the run did not happen)
    status: RunStatus = RunStatus.COMPLETED
    reason: str = ""
    logs: Path | None = None
    raw: list[Verdict] = field(default_factory=list)  # before expected violations are applied


@dataclass
class Outcome:
    """Everything a report needs about one scenario run."""

    scenario: Scenario
    mode: Mode
    verdict: Result
    verdicts: list[Verdict]
    runs: list[ModeRun]
    out_dir: Path
    artifacts: dict[str, Path] = field(default_factory=dict)

    def run(self, mode: Mode) -> ModeRun | None:
        return next((r for r in self.runs if r.mode == mode), None)

    @property
    def primary(self) -> ModeRun:
        """The run the top-level facts come from: the real one when there is one."""
        return self.run(Mode.REAL) or self.runs[0]


def with_overrides(
    scenario: Scenario, runtime: str | None = None, backend: str | None = None
) -> Scenario:
    """The scenario with ``--runtime`` / ``--backend`` applied, validated again
    (``ProblemError`` if, say, nccl meets a host without GPUs)."""
    update = {k: v for k, v in (("runtime", runtime), ("backend", backend)) if v}
    if not update:
        return scenario
    data = scenario.model_dump(mode="json", by_alias=True)
    data.update(update)
    return parse_scenario(yaml.safe_dump(data, sort_keys=False), f"<{scenario.name} {update}>")


def judge(
    history: History, scenario: Scenario, mode: Mode, path: Path, model: RuntimeModel | None = None
) -> ModeRun:
    """Judge one history (mode sim or real) by every property but conformance."""
    f = checks.facts(history, scenario, model)
    verdicts = checks.evaluate(f)
    overall, marked = checks.judge(verdicts, checks.expected_violations(scenario, mode))
    return ModeRun(
        mode,
        path,
        history,
        overall,
        marked,
        checks.broken_worlds(f),
        checks.detections(f),
        facts=f,
        raw=verdicts,
    )


def _not_run(mode: Mode, path: Path, reason: str) -> ModeRun:
    history = read_history(path) if path.exists() else History([])
    verdicts = [Verdict(name, UNKNOWN, reason) for name in checks.CHECKS]
    return ModeRun(
        mode,
        path,
        history,
        UNKNOWN,
        verdicts,
        [],
        [],
        status=RunStatus.NOT_RUN,
        reason=reason,
        raw=verdicts,
    )


def run_scenario(
    scenario: Scenario,
    *,
    mode: Mode | str = Mode.BOTH,
    out_dir: str | Path,
    model: RuntimeModel | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
    bringup_timeout_s: float = 90.0,
    zygote: Zygote | None = None,
    network: str = "auto",
    cluster: str | None = None,
) -> Outcome:
    """Run ``scenario`` in ``mode`` and judge it; histories land under ``out_dir``.

    A real run needs its runtime here (and emulated hosts for network faults):
    ``Inconclusive`` is raised, before anything starts, when it cannot run. ``network``:
    ``auto`` (emulated hosts where possible), ``emulated`` or ``loopback``; ``cluster``:
    the agents on a Ray cluster instead (``ray``, ``ray://HOST:PORT`` or ``auto``).
    """
    mode = Mode(mode)
    out = Path(out_dir)
    runs: list[ModeRun] = []
    predicted: ModeRun | None = None
    if mode in (Mode.SIM, Mode.BOTH):
        history = simulate(scenario, seed=seed, model=model)
        path = out / Mode.SIM / "history.jsonl"
        with alongside(lambda: write_history(path, history), len(history)):  # while judged
            predicted = judge(history, scenario, Mode.SIM, path, model)
        runs.append(predicted)
    if mode in (Mode.REAL, Mode.BOTH):
        controller = Controller(
            scenario,
            out / Mode.REAL,
            progress=progress,
            bringup_timeout_s=bringup_timeout_s,
            zygote=zygote,
            network=network,
            cluster=cluster,
        )
        real = controller.run()
        if real.status is not RunStatus.COMPLETED:
            run = _not_run(Mode.REAL, real.history, f"real run {real.status}: {real.reason}")
        else:
            run = judge(read_history(real.history), scenario, Mode.REAL, real.history, model)
        run.logs = real.logs
        runs.append(run)
    return _outcome(scenario, mode, runs, out, predicted)


def _outcome(
    scenario: Scenario, mode: Mode, runs: list[ModeRun], out: Path, predicted: ModeRun | None
) -> Outcome:
    if mode is not Mode.BOTH:
        return Outcome(scenario, mode, runs[0].verdict, runs[0].verdicts, runs, out)
    real = next(r for r in runs if r.mode is Mode.REAL)
    if real.facts is not None and predicted is not None and predicted.facts is not None:
        conformance = checks.conformance(real.facts, predicted.facts)
    else:
        conformance = Verdict("conformance", UNKNOWN, real.reason or "no real history")
    overall, marked = checks.judge(
        [*real.raw, conformance], checks.expected_violations(scenario, Mode.BOTH)
    )
    if real.status is not RunStatus.COMPLETED:
        overall = UNKNOWN
    return Outcome(scenario, mode, overall, marked, runs, out)


def recheck(
    history_path: str | Path, scenario: Scenario, model: RuntimeModel | None = None
) -> Outcome:
    """Judge a stored history again (``mwsim check``): the same verdicts as its run."""
    path = Path(history_path)
    history = read_history(path)
    meta = history.meta
    mode = Mode.SIM if meta is not None and meta.get("mode") == Mode.SIM else Mode.REAL
    run = judge(history, scenario, mode, path, model)
    return Outcome(scenario, mode, run.verdict, run.verdicts, [run], path.parent)
