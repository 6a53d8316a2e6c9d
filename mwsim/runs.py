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
from mwsim.errors import BringUpFailed, Inconclusive
from mwsim.findings import findings_in, known_for
from mwsim.history import (
    Cause,
    History,
    Mode,
    Reference,
    append_history,
    read_history,
    write_history,
)
from mwsim.internal.alongside import alongside
from mwsim.replay import Controller, RealRun, RunStatus
from mwsim.replay.zygote import Zygote
from mwsim.scenario import Scenario, parse_scenario
from mwsim.sim import simulate
from mwsim.timing import RuntimeModel
from mwsim.whatif import FaultCost, fault_costs

Progress = Callable[[float, float, dict[str, int]], None]

#: The runtime that decides whose doing an unclear failed bring-up was (upstream MultiWorld).
REFERENCE = "multiworld"
#: How long the reference's deployment runs once it serves (it only has to come up).
PROBE_S = 1.0


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
    costs: list[FaultCost] = field(default_factory=list)  # serve: what each fault cost

    def run(self, mode: Mode) -> ModeRun | None:
        return next((r for r in self.runs if r.mode == mode), None)

    @property
    def primary(self) -> ModeRun:
        """The run the top-level facts come from: the real one when there is one."""
        return self.run(Mode.REAL) or self.runs[0]

    def known_findings(self) -> list[int | str]:
        """The known upstream findings (docs/findings.md) that the events of a real run with
        a violation (expected or not) run into, as the fuzzers name them; empty for a run
        with none, a failed bring-up (no event ran) or a model-only run."""
        real = self.run(Mode.REAL)
        if real is None or all(v.verdict != Result.FAIL for v in self.verdicts):
            return []
        if real.facts is None or checks.bringup_failure(real.facts) is not None:
            return []  # its events never ran
        known = known_for(self.scenario.runtime)
        return list(dict.fromkeys(findings_in(self.scenario, known))) if known else []


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


def judge_history(
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
    reference: str | None = REFERENCE,
) -> Outcome:
    """Run ``scenario`` in ``mode`` and judge it; histories land under ``out_dir``.

    A real run needs its runtime here (and emulated hosts for network faults):
    ``Inconclusive`` is raised, before anything starts, when it cannot run. ``network``:
    ``auto`` (emulated hosts where possible), ``emulated`` or ``loopback``; ``cluster``:
    the agents on a Ray cluster instead (``ray``, ``ray://HOST:PORT`` or ``auto``).
    ``reference``: the runtime that decides whose doing an unclear failed bring-up was.
    """
    mode = Mode(mode)
    out = Path(out_dir)
    runs: list[ModeRun] = []
    predicted: ModeRun | None = None
    if mode in (Mode.SIM, Mode.BOTH):
        history = simulate(scenario, seed=seed, model=model)
        path = out / Mode.SIM / "history.jsonl"
        with alongside(lambda: write_history(path, history), len(history)):  # while judged
            predicted = judge_history(history, scenario, Mode.SIM, path, model)
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
        if real.cause == Cause.UNCLEAR:
            ask_reference(real, scenario, reference, zygote, network, cluster)
        run = judge_history(read_history(real.history), scenario, Mode.REAL, real.history, model)
        run.status, run.reason, run.logs = real.status, real.reason, real.logs
        runs.append(run)
    outcome = _outcome(scenario, mode, runs, out, predicted)
    outcome.costs = fault_costs(scenario, model, seed)
    return outcome


def _outcome(
    scenario: Scenario, mode: Mode, runs: list[ModeRun], out: Path, predicted: ModeRun | None
) -> Outcome:
    if mode is not Mode.BOTH:
        return Outcome(scenario, mode, runs[0].verdict, runs[0].verdicts, runs, out)
    real = next(r for r in runs if r.mode is Mode.REAL)
    if real.facts is not None and predicted is not None and predicted.facts is not None:
        conformance = checks.conformance_of(real.facts, predicted.facts)
    else:
        conformance = Verdict("conformance", UNKNOWN, real.reason or "no real history")
    overall, marked = checks.judge(
        [*real.raw, conformance], checks.expected_violations(scenario, Mode.BOTH)
    )
    return Outcome(scenario, mode, overall, marked, runs, out)


def ask_reference(
    real: RealRun,
    scenario: Scenario,
    reference: str | None,
    zygote: Zygote | None = None,
    network: str = "auto",
    cluster: str | None = None,
) -> None:
    """A bring-up that failed for an unclear reason (a stall, an agent killed by SIGKILL):
    the ``reference`` runtime brings up the same deployment (no events), and whether it
    served is added to the history as a ``reference`` record, which the checks weigh (it
    served: the runtime under test failed; it did not: the harness or this machine did).
    Nothing is asked when the runtime under test is the reference (or there is none)."""
    history = read_history(real.history)
    meta = history.meta
    runtime = (meta.runtime if meta is not None else None) or scenario.runtime
    if reference is None or reference == runtime:
        return
    probe = scenario.model_copy(
        update={"runtime": reference, "events": [], "duration_s": PROBE_S, "name": "reference"}
    )
    served: bool | None = False
    try:
        where = real.history.parent / "reference"
        controller = Controller(probe, where, zygote=zygote, network=network, cluster=cluster)
    except Inconclusive as exc:
        served, detail = None, f"the reference runtime {reference} cannot run here: {exc}"
    else:
        try:
            controller.start()
            served = True
            detail = f"{reference} brought the same deployment up, and every world served"
        except BringUpFailed as exc:
            detail = f"{reference} did not come up either ({checks.headline(str(exc))})"
        finally:
            controller.finish(RunStatus.COMPLETED if served else RunStatus.BRINGUP_FAILED)
    last = history.events[-1].t
    record = Reference(t=last, runtime=reference, served=served, detail=detail)
    append_history(real.history, [record])


def recheck(
    history_path: str | Path, scenario: Scenario, model: RuntimeModel | None = None
) -> Outcome:
    """Judge a stored history again (``mwsim check``): the same verdicts as its run."""
    path = Path(history_path)
    history = read_history(path)
    meta = history.meta
    mode = Mode.SIM if meta is not None and meta.mode == Mode.SIM else Mode.REAL
    run = judge_history(history, scenario, mode, path, model)
    outcome = Outcome(scenario, mode, run.verdict, run.verdicts, [run], path.parent)
    outcome.costs = fault_costs(scenario, model, meta.get("seed") if meta is not None else None)
    return outcome
