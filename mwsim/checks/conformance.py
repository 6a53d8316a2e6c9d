"""**conformance**: the observed history agrees with the predicted one."""

from __future__ import annotations

import math

from mwsim.checks.bringup import headline
from mwsim.checks.index import Facts, facts
from mwsim.checks.reasoning import faults_of
from mwsim.checks.requests import Phase, decided, judgeable, percentile, phases, serving
from mwsim.checks.verdicts import UNKNOWN, Evidence, Verdict, fmt, summary
from mwsim.history import Answered, History
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
    said = ""
    if serving(obs):
        said = "; " + _requests(obs, pre, problems)
    broken = sum(1 for by in obs.reports.values() if by)
    ok = f"{broken} broken world(s) and their reports as predicted{said}"
    return summary(NAME, problems, ok)


#: How far the real run's requests may stray from the model's, per phase: the share
#: answered (percentage points, widened by two standard errors of the real run's share
#: when it has few requests), and the median latency (a factor, plus a slack).
SHARE_TOLERANCE = 0.10
LATENCY_FACTOR = 5.0
LATENCY_SLACK_S = 0.005


def _requests(obs: Facts, pre: Facts, problems: list[Evidence]) -> str:
    """Per phase of the real run, its requests against the model's: the share answered
    and the median latency; what they were, in words."""
    said = []
    for phase in phases(obs):
        real, model = _served(obs, phase), _served(pre, phase)
        if real is None or model is None:
            continue
        (share, p50, n), (want_share, want_p50, _) = real, model
        said.append(
            f"{phase.name}: {share:.0%} answered, p50 {p50 * 1000:.1f} ms "
            f"(model {want_share:.0%}, {want_p50 * 1000:.1f} ms)"
        )
        if abs(share - want_share) > share_tolerance(share, want_share, n):
            what = (
                f"{phase.name} ({phase.start:.1f}-{phase.end:.1f} s): {share:.0%} of the "
                f"requests answered, the model {want_share:.0%}"
            )
            problems.append(Evidence(None, what, "share answered unlike the model's", phase.start))
        if p50 > want_p50 * LATENCY_FACTOR + LATENCY_SLACK_S:
            what = (
                f"{phase.name} ({phase.start:.1f}-{phase.end:.1f} s): median latency "
                f"{p50 * 1000:.1f} ms, the model {want_p50 * 1000:.1f} ms"
            )
            problems.append(Evidence(None, what, "latency unlike the model's", phase.start))
    return "requests " + (", ".join(said) or "not compared")


def share_tolerance(share: float, want: float, n: int) -> float:
    """How far ``share`` of ``n`` requests may stray from the ``want``ed one."""
    spread = max(share * (1 - share), want * (1 - want))
    return SHARE_TOLERANCE + 2 * math.sqrt(spread / n)


def _served(f: Facts, phase: Phase) -> tuple[float, float, int] | None:
    """(share answered, median latency, how many) of the requests admitted in ``phase``."""
    ended = [
        decided(f, rid)
        for rid, r in f.requests.items()
        if phase.start <= r.t < phase.end and (decided(f, rid) or judgeable(f, r.t))
    ]
    if not ended:
        return None
    latencies = [e.latency_s for e in ended if isinstance(e, Answered)]
    share = len(latencies) / len(ended)
    return share, percentile(latencies, 0.5) if latencies else float("inf"), len(ended)


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
