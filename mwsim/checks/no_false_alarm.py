"""**no_false_alarm**: no healthy world is ever reported broken."""

from __future__ import annotations

from mwsim.checks.index import Facts
from mwsim.checks.reasoning import faults_of, judge_or_excuse, unexpected_exits
from mwsim.checks.verdicts import Evidence, Verdict, fmt, summary
from mwsim.events import BREAKING
from mwsim.membership import WorldLife
from mwsim.scenario import Property

NAME = Property.NO_FALSE_ALARM


def _first_fault_at(f: Facts, life: WorldLife) -> float | None:
    times = [x.t for x in faults_of(f, life) if x.step.kind in BREAKING]
    times += unexpected_exits(f, life)
    return min(times, default=None)


def check(f: Facts) -> Verdict:
    problems: list[Evidence] = []
    excused: list[str] = []
    # the watchdog flags a peer silent for its lower bound; a stall that long in the upper
    # bound before a report may have caused it
    silence, look_back = f.model.watchdog_window()
    count = 0
    for world_id, by_worker in f.reports.items():
        life = f.plan.world(world_id)
        first = _first_fault_at(f, life)
        for worker, report in by_worker.items():
            if report.t > f.end:
                continue
            count += 1
            if first is None or report.t < first:
                how = ""
                if report.raised is not None:  # the runtime's failure signal
                    how = f" ({report.op or 'an op'} raised {report.raised})"
                problem = Evidence(
                    life.name,
                    f"{life.name}: {worker} reported it broken at {fmt(report.t)} "
                    f"while no member was faulty{how}",
                    "reported broken while healthy",
                    report.t,
                )
                t = report.t
                judge_or_excuse(f, life, (t - look_back, t), silence, problem, problems, excused)
    ok = f"all {count} broken report(s) followed a fault"
    return summary(NAME, problems, ok, excused)
