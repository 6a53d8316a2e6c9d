"""**errors**: the runtime raises nothing but its failure signal."""

from __future__ import annotations

from mwsim.checks.index import Facts
from mwsim.checks.verdicts import Evidence, Verdict, fmt, summary
from mwsim.history import Source
from mwsim.scenario import Property

NAME = Property.ERRORS


def check(f: Facts) -> Verdict:
    """The runtime raises nothing but its failure signal (which, on a world no fault
    touched, is a false alarm: ``no_false_alarm`` judges it); an error the harness itself
    hit makes the verdict unknown."""
    problems: list[Evidence] = []
    doubts: list[str] = []
    for e in f.errors:
        if e.t > f.end:
            continue
        life = f.plan.resolve(e.world, e.life, e.t) if e.world else None
        world = life.name if life is not None else None
        who = e.worker or "the controller"
        if e.source == Source.RUNTIME:
            kind = f"{e.op or 'a call'} raised {e.exception or 'an exception'}"
            where = f" on {world}" if world else ""
            detail = f"{who}{where} at {fmt(e.t)}: {e.message}"
            problems.append(Evidence(world, detail, kind, e.t))
        elif e.source == Source.HARNESS:
            doubts.append(f"the harness hit an error at {fmt(e.t)} ({who}): {e.message}")
    ok = f"the runtime raised nothing but its failure signal ({len(f.raised)} time(s))"
    return summary(NAME, problems, ok, doubts)
