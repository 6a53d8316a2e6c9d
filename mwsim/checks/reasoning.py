"""Reasoning several properties share: when a world was healthy, its outages, the
allowances slow links and members earn, and excusing a violation the harness caused.
"""

from __future__ import annotations

from mwsim.checks.index import Facts, Injected, lagged
from mwsim.checks.verdicts import Evidence
from mwsim.events import Degrade, GpuSlow, Kind, Slow
from mwsim.membership import WorldLife


def faults_of(f: Facts, life: WorldLife) -> list[Injected]:
    """Faults that hit ``life``: the one that ended it, and hangs/slows of its members."""
    out = []
    for index in {s.event for s in life.spans} | {life.end_event}:
        if index is not None and index in f.faults:
            out.append(f.faults[index])
    return sorted(out, key=lambda x: x.t)


def unexpected_exits(f: Facts, life: WorldLife) -> list[float]:
    """When members of ``life`` died unasked (an initial world's: from bring-up on)."""
    since = life.start if life.origin is not None else float("-inf")
    return [
        t for m in life.members for t, expected in f.died.get(m, []) if not expected and t >= since
    ]


def formed_at(f: Facts, life: WorldLife) -> float | None:
    if life.origin is None:
        return 0.0
    joined = f.joined.get(life.id, {})
    if not all(m in joined for m in life.members):
        return None
    return max(joined[m] for m in life.members)


def recover_bound(f: Facts, outage: Injected) -> float:
    """How soon after a heal a world nobody flagged must serve again."""
    assert outage.end is not None
    if f.bounds.recover_within_s is not None:
        return f.bounds.recover_within_s
    return f.model.recovery_bound(outage.end - outage.t, f.scenario.op_interval_s)


def outages(f: Facts, life: WorldLife) -> list[tuple[Injected, float | None]]:
    """Faults that stop ``life`` without ending it (a member hung, a partition cutting it),
    each with when the world may serve again (None: never: not healed, or reset)."""
    out: list[tuple[Injected, float | None]] = []
    for x in faults_of(f, life):
        ev = x.step.event
        if not ev.info.breaks or ev.info.ends:
            continue
        back = x.end
        if x.step.kind is Kind.PARTITION and back is not None:
            back = None if not ev.silent else back + recover_bound(f, x)
        out.append((x, back))
    return out


def healthy_segments(f: Facts, life: WorldLife) -> list[tuple[float, float]]:
    """Stretches of time in which ``life`` has joined, no member is faulty and no cut
    separates its members (nor is it still recovering from one)."""
    start = formed_at(f, life)
    if start is None:
        return []
    end = f.end
    if life.end is not None:
        end = min(end, f.faults[life.end_event].t if life.end_event in f.faults else life.end)
    end = min([end, *unexpected_exits(f, life)])
    reported = bool(f.reports.get(life.id))
    out, cursor = [], start
    for outage, back in outages(f, life):
        if outage.t >= end:
            break
        if outage.t > cursor:
            out.append((cursor, outage.t))
        if back is None or reported:  # never back, or the world was flagged for good
            return out
        cursor = max(cursor, back)
    if cursor < end:
        out.append((cursor, end))
    return out


def slow_allowance(f: Facts, life: WorldLife, a: float, b: float) -> float:
    """Extra gap allowed while a member of the world is slowed or its link degraded."""
    extra = 0.0
    for x in faults_of(f, life):
        ev = x.step.event
        if x.t >= b or (x.end is not None and x.end <= a):
            continue
        if isinstance(ev, Slow):
            extra = max(extra, ev.delay_ms / 1000)
        elif isinstance(ev, GpuSlow):  # each op's GPU work takes factor times longer
            work = f.scenario.workload.interval_s + f.model.op_latency_s
            extra = max(extra, (ev.factor - 1) * work)
        elif isinstance(ev, Degrade):
            extra = max(extra, _degrade_allowance(f, ev))
    return extra


def _degrade_allowance(f: Facts, ev: Degrade) -> float:
    """A degraded link delays round trips by its delay and jitter (an op may wait for two),
    loses packets that TCP resends after a backed-off timeout, and takes time to carry a
    tensor."""
    extra = 2 * ((ev.delay_ms or 0.0) + (ev.jitter_ms or 0.0)) / 1000
    if ev.loss_pct:
        extra += 8 * f.model.rto_min_s
    if ev.rate_mbit:
        extra += 2 * f.scenario.workload.tensor_bytes * 8 / (ev.rate_mbit * 1e6)
    return extra


def judge_or_excuse(
    f: Facts,
    life: WorldLife,
    during: tuple[float, float],
    over: float,
    problem: Evidence,
    problems: list[Evidence],
    excused: list[str],
) -> None:
    """A timing violation of ``life``, ``over`` seconds past its bound ``during`` that
    stretch: a problem, or (unknown) excused if the harness fell behind about as long."""
    why = lagged(f, life.members, *during, over)
    if why is None:
        problems.append(problem)
    else:
        excused.append(f"{problem.detail}: not judged, {why}")


def alive_until(f: Facts, worker: str, since: float) -> float:
    """When ``worker`` stopped being able to report, after ``since`` (its exit or a hang)."""
    times = [t for t, _ in f.died.get(worker, []) if since <= t < f.end]
    times += [x.t for x in f.hangs.get(worker, []) if x.t > since]
    return min(times, default=float("inf"))
