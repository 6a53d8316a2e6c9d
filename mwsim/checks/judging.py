"""Judging a run: every property on the facts (each isolated: a check that raises is
``unknown``, the others still judge), the overall verdict, and what reports list.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mwsim.checks import (
    detection,
    errors,
    goodput,
    hygiene,
    integrity,
    no_false_alarm,
    progress,
    recovery,
    scale_out,
    served,
    slo,
    survival,
)
from mwsim.checks.bringup import bringup_cause, headline, not_the_runtimes
from mwsim.checks.index import Facts, facts
from mwsim.checks.reasoning import faults_of
from mwsim.checks.verdicts import FAIL, PASS, UNKNOWN, Result, Verdict, fmt
from mwsim.events import BREAKING
from mwsim.history import (
    Cause,
    History,
    Mode,
)
from mwsim.scenario import REQUEST_PROPERTIES, Property, Scenario
from mwsim.timing import RuntimeModel

#: Every property but conformance (which compares two histories), in report order.
PROPERTIES = (
    progress,
    detection,
    no_false_alarm,
    integrity,
    scale_out,
    hygiene,
    recovery,
    survival,
    errors,
    served,
    slo,
    goodput,
)
CHECKS: dict[str, Callable[[Facts], Verdict]] = {m.NAME: m.check for m in PROPERTIES}


def checks_for(scenario: Scenario) -> dict[str, Callable[[Facts], Verdict]]:
    """The properties a run of ``scenario`` is judged by: the request properties only
    for the serve workload (elsewhere there are no requests to judge)."""
    if scenario.workload.kind == "serve":
        return CHECKS
    return {name: c for name, c in CHECKS.items() if name not in REQUEST_PROPERTIES}


def _unconfirmed(f: Facts) -> list[str]:
    return [
        f"{x.step.kind} of {x.step.event.subject} at {fmt(x.t)} was not confirmed injected"
        for x in f.faults.values()
        if not x.confirmed and not x.incomplete and x.t < f.end
    ]


def safely(name: str, check: Callable[[Facts], Verdict], f: Facts) -> Verdict:
    """One property's verdict; a check that raises is a bug of mwsim's, not the system's:
    that property is ``unknown`` with the traceback, and the others still judge."""
    try:
        return check(f)
    except Exception as exc:
        trace = traceback.format_exc()
        why = headline(f"{type(exc).__name__}: {exc}")[:200]
        detail = f"the check itself raised {why} (an mwsim bug: see the traceback)"
        return Verdict(name, UNKNOWN, detail, evidence=("the check raised",), traceback=trace)


def evaluate(f: Facts) -> list[Verdict]:
    """Every property except conformance. A fault not confirmed injected turns a would-be
    pass into unknown; a bring-up the harness failed leaves every property unknown."""
    judged = checks_for(f.scenario)
    if bringup_cause(f) is Cause.HARNESS:
        why = not_the_runtimes(f)
        return [Verdict(name, UNKNOWN, why) for name in judged]
    verdicts = [safely(name, check, f) for name, check in judged.items()]
    doubts = _unconfirmed(f)
    if doubts:
        verdicts = [
            replace(v, verdict=UNKNOWN, detail=doubts[0]) if v.verdict == PASS else v
            for v in verdicts
        ]
    return verdicts


def check(history: History, scenario: Scenario, model: RuntimeModel | None = None) -> list[Verdict]:
    """``evaluate`` the facts of ``history``."""
    return evaluate(facts(history, scenario, model))


def expected_violations(scenario: Scenario, mode: str) -> set[str]:
    """Properties this run must violate: the scenario's ``expect.violations`` as they apply
    to a mode. The simulator models a correct runtime, so it is expected to violate none."""
    wanted = set(scenario.expect.violations)
    if mode == Mode.SIM:
        return set()
    if mode == Mode.REAL:
        return wanted - {Property.CONFORMANCE}
    return wanted


def judge(verdicts: list[Verdict], expected: set[str]) -> tuple[Result, list[Verdict]]:
    """Overall verdict: pass only if exactly the expected properties are violated and nothing
    else is in doubt. Expected violations are marked on their verdicts."""
    marked = [replace(v, expected=v.name in expected and v.verdict == FAIL) for v in verdicts]
    judged = {v.name for v in marked}
    failed = {v.name for v in marked if v.verdict == FAIL}
    missing = (expected & judged) - failed
    for name in sorted(missing):
        held = next(v for v in marked if v.name == name)
        if held.verdict == PASS:
            marked = [
                Verdict(
                    v.name,
                    FAIL,
                    f"expected to be violated, but it held: {v.detail}",
                    v.world,
                    evidence=("held though expected to be violated",),
                )
                if v.name == name
                else v
                for v in marked
            ]
    failed_now = {v.name for v in marked if v.verdict == FAIL and not v.expected}
    if failed_now:
        return FAIL, marked
    if any(v.verdict == UNKNOWN for v in marked):
        return UNKNOWN, marked
    return PASS, marked


def detections(f: Facts) -> list[dict[str, Any]]:
    """Each reported broken world with the fault it followed and the latency."""
    out = []
    for world_id, by_worker in sorted(f.reports.items(), key=lambda kv: f.plan.row(kv[0])):
        life = f.plan.world(world_id)
        faults = [x for x in faults_of(f, life) if x.step.kind in BREAKING]
        for worker, e in sorted(by_worker.items(), key=lambda kv: kv[1].t):
            if e.t > f.end:
                continue
            before = [x for x in faults if x.t <= e.t]
            record: dict[str, Any] = {"world": life.name, "worker": worker}
            if before:
                record["fault"] = before[0].step.kind.value
                record["latency_s"] = round(e.t - before[0].t, 4)
            else:
                record["fault"] = None
                record["latency_s"] = None
            out.append(record)
    return out


def violated_pairs(verdicts: list[Verdict]) -> set[tuple[str, str | None]]:
    """(property, world) for every world a failed property names."""
    return {(v.name, w) for v in verdicts if v.verdict == FAIL for w in (v.worlds or (v.world,))}


def broken_worlds(f: Facts) -> list[str]:
    return sorted({world_id.name for world_id, by in f.reports.items() if by})
