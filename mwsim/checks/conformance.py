"""**conformance**: the observed history agrees with the predicted one."""

from __future__ import annotations

from mwsim.checks.bringup import headline
from mwsim.checks.index import Facts, facts
from mwsim.checks.reasoning import faults_of
from mwsim.checks.verdicts import UNKNOWN, Evidence, Verdict, fmt, summary
from mwsim.history import History
from mwsim.membership import WorldLife
from mwsim.scenario import Property, Scenario
from mwsim.timing import RuntimeModel

NAME = Property.CONFORMANCE


CONFORMANCE_TOLERANCE_S = 0.1


def check_conformance(
    observed: History, predicted: History, scenario: Scenario, model: RuntimeModel | None = None
) -> Verdict:
    """Same broken worlds, and each observed report inside the predicted window."""
    return conformance_of(facts(observed, scenario, model), facts(predicted, scenario, model))


def conformance_of(obs: Facts, pre: Facts) -> Verdict:
    """``check_conformance`` on the facts of the two histories."""
    if obs.bringup is not None:
        reason = headline(obs.bringup.reason)
        why = f"not compared: the real deployment did not come up ({reason})"
        return Verdict(NAME, UNKNOWN, why)
    problems: list[Evidence] = []
    tol = CONFORMANCE_TOLERANCE_S
    for world_id, by_worker in pre.reports.items():
        life = pre.plan.world(world_id)
        for worker, e in by_worker.items():
            lo, hi = e.window or (e.t, e.t)
            seen = obs.reports.get(world_id, {}).get(worker)
            if seen is None or seen.t > obs.end:
                if not e.optional and hi < obs.end:
                    problems.append(
                        Evidence(
                            life.name,
                            f"{life.name}: {worker} was predicted to report it broken in "
                            f"[{lo:.2f}, {hi:.2f}] s and did not",
                            "predicted report missing",
                            hi,
                        )
                    )
            elif not lo - tol <= seen.t <= hi + tol:
                problems.append(
                    Evidence(
                        life.name,
                        f"{life.name}: {worker} reported it broken at {fmt(seen.t)}, outside "
                        f"the predicted [{lo:.2f}, {hi:.2f}] s",
                        "report outside its predicted window",
                        seen.t,
                    )
                )
    for world_id, by_worker in obs.reports.items():
        life = obs.plan.world(world_id)
        for worker, e in by_worker.items():
            if e.t > obs.end or worker in pre.reports.get(world_id, {}):
                continue
            if _ambiguous_hang(obs, life, e.t):
                continue
            problems.append(
                Evidence(
                    life.name,
                    f"{life.name}: {worker} reported it broken at {fmt(e.t)}; "
                    "the model predicts no report",
                    "report the model does not predict",
                    e.t,
                )
            )
    broken = sum(1 for by in obs.reports.values() if by)
    return summary(NAME, problems, f"{broken} broken world(s) and their reports as predicted")


def _ambiguous_hang(f: Facts, life: WorldLife, t: float) -> bool:
    """Was a member of ``life`` hung, or the world cut silently, around ``t`` (a report
    then may or may not come)?"""
    lo, hi = f.model.watchdog_window()
    return any(
        x.step.event.silent
        and not x.step.event.info.ends
        and x.t + lo - CONFORMANCE_TOLERANCE_S <= t
        and (x.end is None or t <= x.end + hi)
        for x in faults_of(f, life)
    )
