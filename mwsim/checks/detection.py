"""**detection**: every world with a faulty member is reported broken by each surviving
member within the bound for that fault.
"""

from __future__ import annotations

from dataclasses import dataclass

from mwsim.checks.index import Facts, Injected
from mwsim.checks.reasoning import alive_until, faults_of, formed_at, judge_or_excuse
from mwsim.checks.verdicts import Evidence, Verdict, fmt, summary
from mwsim.events import BREAKING, Kind
from mwsim.membership import WorldId, WorldLife
from mwsim.scenario import Property
from mwsim.timing import (
    detection_window,
    failing_peers,
)

NAME = Property.DETECTION


def _free_at(f: Facts, worker: str, since: float) -> float | None:
    """When ``worker`` can look at ``since``: then, or when its own hang ends (None: never)."""
    for x in f.hangs.get(worker, []):
        if x.t <= since:
            if x.end is None:
                return None
            if x.end > since:
                return x.end
    return since


def _cut_off(
    f: Facts, life: WorldLife, rank: int, others: list[int], since: float
) -> Injected | None:
    """A dropping partition in force at ``since`` that cuts member ``rank`` of ``life`` off
    from one of ``others``: nothing of theirs reaches it (not even a reset) until the heal."""
    me, them = life.members[rank], {life.members[o] for o in others}
    for x in f.cuts:
        if x.t > since or (x.end is not None and x.end <= since):
            continue
        if them & set(x.step.cut.get(life.name, {}).get(me, [])):
            return x
    return None


def _bound(f: Facts, life: WorldLife, fault: Injected, rank: int, others: list[int]) -> float:
    """How soon member ``rank`` must notice the loss of ranks ``others``. Cut off from them
    by a partition, it sees a loud fault only as the watchdog does, or once the cut heals
    and TCP sends again (whichever is later: either may be first)."""
    kind = fault.step.kind
    if kind in f.bounds.detect_within_s:
        return f.bounds.detect_within_s[kind]
    workload, interval = f.scenario.workload.kind, f.scenario.op_interval_s

    def bound(silent: bool) -> float:
        return min(
            detection_window(f.model, workload, interval, silent, rank, other).hi
            for other in others
        )

    ev = fault.step.event
    silent = ev.silent_to(f.plan.worker(life.members[rank], fault.t).host)
    if kind is Kind.PARTITION and f.scenario.only_receives(rank):
        silent = True
    cut = None if silent else _cut_off(f, life, rank, others, fault.t)
    if cut is None:
        return bound(silent)
    if cut.end is None:
        return bound(True)
    healed = cut.end - fault.t + f.model.resume_after(cut.end - cut.t) + bound(False)
    return max(bound(True), healed)


@dataclass
class _Need:
    life: WorldLife
    survivor: str
    fault: Injected
    deadline: float


def _detection_needs(f: Facts) -> tuple[list[_Need], list[str]]:
    """Every (world, survivor) that must report, with its deadline; plus why some are unknown."""
    needs: dict[tuple[WorldId, str], _Need] = {}
    unknown: list[str] = []
    for life in f.plan.worlds:
        for fault in faults_of(f, life):
            ev = fault.step.event
            if ev.kind not in BREAKING or fault.t >= f.end:
                continue
            if fault.incomplete:
                continue  # the leave did not happen: judged by scale_out
            if not fault.confirmed:
                unknown.append(f"{ev.kind} of {ev.subject} at {fmt(fault.t)} was not confirmed")
                continue
            formed = formed_at(f, life)
            if formed is None or formed > fault.t:
                continue  # never formed: nobody was waiting on the faulty member
            # a fault nobody notices by design (a GPU hang) is due only where expect asks
            demanded = ev.info.noticed == "none" and ev.kind in f.bounds.detect_within_s
            who = "peers" if demanded else None
            for rank, others in failing_peers(fault.step, life, who).items():
                survivor = life.members[rank]
                free = _free_at(f, survivor, fault.t)  # a hung survivor looks once back
                if free is None or not others:
                    continue
                deadline = free + _bound(f, life, fault, rank, others)
                passing = ev.silent and not ev.info.ends  # a hang, a dropping partition
                if passing and fault.end is not None and fault.end < deadline:
                    continue  # back before the bound: a report is allowed, not required
                if alive_until(f, survivor, fault.t) < deadline:
                    continue  # the survivor itself went down first
                key = (life.id, survivor)
                if key not in needs or deadline < needs[key].deadline:
                    needs[key] = _Need(life, survivor, fault, deadline)
    return list(needs.values()), unknown


def check(f: Facts) -> Verdict:
    needs, unknown = _detection_needs(f)
    problems: list[Evidence] = []
    late_unknown: list[str] = []
    for need in needs:
        report = f.reports.get(need.life.id, {}).get(need.survivor)
        ev = need.fault.step.event
        what = f"{ev.kind} of {ev.subject} at {fmt(need.fault.t)}"
        bound = need.deadline - need.fault.t
        if report is not None and report.t <= need.deadline:
            continue
        if report is None and need.deadline > f.end:
            late_unknown.append(f"{need.life.name}: the run ended before the {bound:.2f} s bound")
            continue
        seen = "never did" if report is None else f"reported it at {fmt(report.t)}"
        problem = Evidence(
            need.life.name,
            f"{need.life.name}: {need.survivor} did not report it broken within "
            f"{bound:.2f} s of the {what}; it {seen}",
            f"{ev.kind} {'never reported' if report is None else 'reported late'}",
            need.deadline,
            (need.fault.t, need.deadline),
        )
        seen_at = report.t if report is not None else f.end
        during, over = (need.fault.t, seen_at), seen_at - need.deadline
        judge_or_excuse(f, need.life, during, over, problem, problems, late_unknown)
    ok = f"{len(needs)} required report(s) of broken worlds, all in time"
    return summary(NAME, problems, ok, unknown + late_unknown)
