"""**scale_out**: a joined or added world serves its first op in time, and leaves and
removals complete.
"""

from __future__ import annotations

from mwsim.checks.index import Facts
from mwsim.checks.reasoning import alive_until, judge_or_excuse, outages
from mwsim.checks.requests import carries_requests, serving
from mwsim.checks.verdicts import Evidence, Verdict, fmt, summary
from mwsim.events import Kind
from mwsim.membership import WorldLife
from mwsim.scenario import Property

NAME = Property.SCALE_OUT


def check(f: Facts) -> Verdict:
    """New worlds serve in time, and the runtime completes every leave and world removal."""
    problems: list[Evidence] = []
    unknown: list[str] = []
    judged = new = idle = 0
    for life in f.plan.worlds:
        if life.origin is None or life.origin_event is None:
            continue
        new += 1
        bound = f.bounds.join_within_s or (
            f.model.join_bound_s if life.origin is Kind.JOIN else f.model.add_world_bound_s
        )
        asked = f.scaled.get(life.origin_event, life.start)
        if serving(f):  # its first op is the first request routed over it
            bound += f.scenario.op_interval_s
            if not carries_requests(f, life, max(asked, life.start), asked + bound):
                idle += 1
                continue
        if _hung_within(f, life, asked, asked + bound) or _cut_within(
            f, life, asked, asked + bound
        ):
            continue  # a member could not do its part (a cut world: recovery judges it)
        streams = f.ops.get(life.id, {})
        first = min((s.t0 for series in streams.values() for s in series), default=None)
        ended = life.end if life.end is not None else f.end
        if first is None:
            if ended < asked + bound and ended < f.end:
                continue  # ended by a fault or removal before it was due
            if asked + bound > f.end:
                unknown.append(f"{life.name}: the run ended before the {bound:g} s bound")
                continue
        judged += 1
        if first is None or first - asked > bound:
            seen = "none at all" if first is None else f"the first at {fmt(first)}"
            problem = Evidence(
                life.name,
                f"{life.name}: no op within {bound:g} s of the {life.origin} at "
                f"{fmt(asked)} ({seen})",
                f"no op in time after {life.origin}",
                asked + bound,
                (asked, asked + bound),
            )
            seen_at = first if first is not None else f.end
            over = seen_at - asked - bound
            judge_or_excuse(f, life, (asked, seen_at), over, problem, problems, unknown)
    leaves = _incomplete_leaves(f, problems)
    removals = _incomplete_removals(f, problems, unknown)
    if judged:
        ok = f"{judged} new world(s) served their first op in time"
    elif new:
        ok = f"{new} new world(s), none due to serve in the judged interval (ended or hung first)"
    else:
        ok = "no world joined or was added"
    if idle:
        ok += f"; {idle} new world(s) on no route requests take, not judged"
    if leaves or removals:
        ok += f"; {leaves} leave(s) and {removals} world removal(s) completed"
    return summary(NAME, problems, ok, unknown)


def _incomplete_leaves(f: Facts, problems: list[Evidence]) -> int:
    """A leave the runtime did not complete (its process did not exit 0 in time) is a
    problem; the number of leaves judged."""
    judged = 0
    for x in f.faults.values():
        if x.step.kind is not Kind.LEAVE or x.t >= f.end or not (x.confirmed or x.delivered):
            continue
        judged += 1
        if x.incomplete:
            if x.code is None:
                within = x.step.event.info.confirm_within_s
                how = f"its process was still running {within:g} s later"
            elif x.code < 0:
                how = f"its process was killed by signal {-x.code}"
            else:
                how = f"its process exited with code {x.code}"
            worker = x.step.event.subject
            detail = f"{worker}'s leave at {fmt(x.t)} did not complete: {how}"
            problems.append(Evidence(None, detail, "leave not completed", x.t))
    return judged


def _incomplete_removals(f: Facts, problems: list[Evidence], unknown: list[str]) -> int:
    """Every member of a removed world must record leaving it within the bound (unless it
    went down first, or the world was cut off or flagged: then it waits for its workload);
    the number of removals judged."""
    judged = 0
    interval = f.scenario.op_interval_s
    for step in f.plan.steps:
        if step.kind is not Kind.REMOVE_WORLD or step.index not in f.scaled:
            continue
        asked = f.scaled[step.index]
        life = next((w for w in f.plan.worlds if w.end_event == step.index), None)
        if life is None or asked >= f.end:
            continue
        in_force = any(
            x.t <= asked and (back is None or back > asked) for x, back in outages(f, life)
        )
        if f.reports.get(life.id) or in_force:
            continue  # flagged, or cut off or stopped: its workload waits, not the removal
        bound = f.model.remove_bound_s + 2 * interval
        due = asked + bound
        if due > f.end:
            unknown.append(f"{life.name}: the run ended before the {bound:g} s removal bound")
            continue
        if _hung_within(f, life, asked, due):
            continue
        judged += 1
        left = f.left.get(life.id, {})
        for member in life.members:
            if alive_until(f, member, asked) < due:
                continue
            t = left.get(member)
            if t is None or t > due:
                seen = "never did" if t is None else f"it did at {fmt(t)}"
                detail = (
                    f"{life.name}: {member} did not complete remove_world within {bound:g} s "
                    f"of {fmt(asked)}; {seen}"
                )
                problems.append(Evidence(life.name, detail, "remove_world not completed", due))
    return judged


def _cut_within(f: Facts, life: WorldLife, a: float, b: float) -> bool:
    """Did a partition cut ``life`` at some time in ``[a, b]`` (until it may serve again)?"""
    return any(
        x.step.kind is Kind.PARTITION and x.t <= b and (back is None or back >= a)
        for x, back in outages(f, life)
    )


def _hung_within(f: Facts, life: WorldLife, a: float, b: float) -> bool:
    """Was a member of ``life`` hung at some time in ``[a, b]``?"""
    return any(
        x.t <= b and (x.end is None or x.end >= a)
        for member in life.members
        for x in f.hangs.get(member, [])
    )
