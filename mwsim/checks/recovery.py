"""**recovery**: after a partition heals or a link is restored, the worlds not reported
broken serve again within the bound the model derives.
"""

from __future__ import annotations

from mwsim.checks.index import Facts
from mwsim.checks.reasoning import faults_of, judge_or_excuse, recover_bound, slow_allowance
from mwsim.checks.requests import carries_requests, serving
from mwsim.checks.verdicts import Evidence, Verdict, fmt, summary
from mwsim.scenario import Property

NAME = Property.RECOVERY


def check(f: Facts) -> Verdict:
    """After a partition heals or a degraded link is repaired, every world it hit that was
    not reported broken serves again within the bound the outage implies."""
    problems: list[Evidence] = []
    unknown: list[str] = []
    judged = idle = 0
    for life in f.plan.worlds:
        for x in faults_of(f, life):
            if not (x.step.event.info.network and x.step.event.info.lasting):
                continue
            if x.end is None or not x.confirmed or x.end >= f.end:
                continue  # never healed (in the judged interval)
            healed, bound = x.end, recover_bound(f, x)
            if f.reports.get(life.id) or (life.end is not None and life.end < healed + bound):
                continue  # flagged broken, or gone: nothing to recover
            if any(
                y is not x
                and y.step.event.info.breaks
                and y.t < healed + bound
                and (y.end is None or y.end > healed)
                for y in faults_of(f, life)
            ):
                continue  # another outage holds the world (a new cut, a hung member)
            bound += slow_allowance(f, life, healed, healed + bound)
            if serving(f):  # its ops are the requests routed over it
                bound += f.scenario.op_interval_s
                if not carries_requests(f, life, healed, healed + bound):
                    idle += 1
                    continue
            ops = [s for series in f.ops.get(life.id, {}).values() for s in series]
            first = min((max(s.t0, healed) for s in ops if s.t1 >= healed), default=None)
            if first is None and healed + bound > f.end:
                unknown.append(f"{life.name}: the run ended before the {bound:.2f} s bound")
                continue
            judged += 1
            if first is None or first - healed > bound:
                seen = "none at all" if first is None else f"the first at {fmt(first)}"
                what = f"{x.step.kind} of {x.step.event.subject} healed at {fmt(healed)}"
                problem = Evidence(
                    life.name,
                    f"{life.name}: no op within {bound:.2f} s after the {what} ({seen})",
                    f"no op after the {x.step.kind} ended",
                    healed + bound,
                )
                seen_at = first if first is not None else f.end
                over = seen_at - healed - bound
                judge_or_excuse(f, life, (healed, seen_at), over, problem, problems, unknown)
    ok = f"{judged} world(s) served again in time after a heal"
    if idle:
        ok += f"; {idle} on no route requests take then, not judged"
    none = "no partition healed and no link was repaired"
    return summary(NAME, problems, ok if judged or idle else none, unknown)
