"""Reasoning the request properties share (the ``serve`` workload): the paths a request
can take, whether a fault touched them, the phases of a run, latency percentiles."""

from __future__ import annotations

from dataclasses import dataclass

from mwsim.checks.index import Facts, Injected
from mwsim.checks.reasoning import alive_until, faults_of, formed_at
from mwsim.history import Answered, Unserved
from mwsim.membership import WorldLife
from mwsim.scenario import FRONTEND

#: What ``goodput`` forgives: the answer rate during a fault may fall this far below the
#: surviving capacity's share of the fault-free rate (a replica's requests in flight when
#: it fails are retried; the rates are of a few seconds of Poisson arrivals).
GOODPUT_TOLERANCE = 0.25
#: A stretch shorter than this is not measured for goodput (too few requests to say).
MIN_STRETCH_S = 2.0


def serving(f: Facts) -> bool:
    return f.scenario.workload.kind == "serve"


def touched(f: Facts, life: WorldLife, a: float, b: float) -> bool:
    """Did a fault act on ``life`` (a member, its host, a cut, a degraded link) in [a, b],
    or was it not there (formed, alive, not broken by an earlier fault: a broken world
    stays broken) for all of it?"""
    formed = formed_at(f, life)
    if (
        formed is None
        or formed > a
        or not (life.start <= a and (life.end is None or life.end >= b))
        or _broken_by_fault(f, life, None, b)
    ):
        return True
    return any(x.t <= b and (x.end is None or x.end >= a) for x in faults_of(f, life))


def hops(f: Facts, sender: str, t: float) -> list[tuple[str, WorldLife]]:
    """Where a request at ``sender`` may go next at ``t``, over which world
    (``Scenario.request_edges``, the worlds alive then that ``sender`` has not reported
    broken after a fault: it routes around those)."""
    return [
        (r, life)
        for r, life in f.scenario.request_edges().get(sender, [])
        if life.alive_at(t) and not _broken_by_fault(f, life, sender, t)
    ]


def _broken_by_fault(f: Facts, life: WorldLife, worker: str | None, t: float) -> bool:
    """Was ``life`` reported broken by ``t`` (by ``worker``; None: by any member) after
    a fault acted on it? (A broken world stays broken; a report no fault explains is
    the runtime's own doing, and does not excuse a request it failed.)"""
    reports = f.reports.get(life.id, {})
    times = [r.t for w, r in reports.items() if r.t <= t and worker in (None, w)]
    return bool(times) and any(x.t <= max(times) for x in faults_of(f, life))


def carries_requests(f: Facts, life: WorldLife, t: float, until: float) -> bool:
    """Do requests cross ``life`` from ``t``: is it a hop of a sender the frontend reaches
    then (over worlds alive then), with the frontend serving until ``until``?"""
    if alive_until(f, FRONTEND, 0.0) <= until:
        return False
    reached, frontier = {FRONTEND}, [FRONTEND]
    while frontier:
        for receiver, hop in hops(f, frontier.pop(), t):
            if hop.id == life.id:
                return True
            if receiver not in reached:
                reached.add(receiver)
                frontier.append(receiver)
    return False


def untouched_path(f: Facts, a: float, b: float) -> list[str] | None:
    """A path from the frontend through a replica of each stage and back over worlds no
    fault touched in [a, b] (its replicas, in order), if there is one."""

    def walk(sender: str, seen: list[str]) -> list[str] | None:
        for receiver, life in hops(f, sender, a):
            if receiver in seen or touched(f, life, a, b):
                continue
            if receiver == FRONTEND:
                return seen
            found = walk(receiver, [*seen, receiver])
            if found is not None:
                return found
        return None

    return walk(FRONTEND, [])


@dataclass(frozen=True)
class Phase:
    """A stretch of the run: before the first fault, while faults (and their requests'
    timeouts) are in force, after."""

    name: str
    start: float
    end: float


def faults_in_run(f: Facts) -> list[Injected]:
    return sorted((x for x in f.faults.values() if x.confirmed and x.t < f.end), key=lambda x: x.t)


def phases(f: Facts) -> list[Phase]:
    faults = faults_in_run(f)
    if not faults:
        return [Phase("whole run", 0.0, f.end)]
    settle = f.scenario.workload.timeout_s
    first = faults[0].t
    last = max(
        (x.end if x.end is not None else f.end) if x.step.event.lasts() else x.t for x in faults
    )
    during_end = min(f.end, last + settle)
    out = [Phase("before", 0.0, first), Phase("during", first, during_end)]
    if during_end < f.end:
        out.append(Phase("after", during_end, f.end))
    return [p for p in out if p.end > p.start]


def in_force_until(f: Facts, x: Injected) -> float:
    """A lasting fault holds until it ends (or the run does); an instant one (a crash)
    only at its instant: what follows is the deployment without the lost replica."""
    if not x.step.event.info.lasting:
        return x.t
    return x.end if x.end is not None else f.end


def decided(f: Facts, rid: int) -> Answered | Unserved | None:
    """What ended request ``rid`` first (None: nothing did)."""
    outcomes = f.outcomes.get(rid)
    return outcomes[0] if outcomes else None


def judgeable(f: Facts, admitted: float) -> bool:
    """Was a request admitted at ``admitted`` due to end before the run did?"""
    return admitted + f.scenario.workload.timeout_s < f.end


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
