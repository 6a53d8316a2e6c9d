"""**goodput** (the serve workload): while a fault holds, the share of arriving requests
answered stays at least the surviving capacity's share of the fault-free share, within
``GOODPUT_TOLERANCE`` (a replica lost out of four leaves three quarters). Shares of the
requests that arrived, not raw rates, so that bursty arrivals compare fairly."""

from __future__ import annotations

from mwsim.checks.index import Facts, Injected
from mwsim.checks.requests import (
    GOODPUT_TOLERANCE,
    MIN_STRETCH_S,
    decided,
    faults_in_run,
    hops,
    judgeable,
    serving,
)
from mwsim.checks.verdicts import PASS, Evidence, Verdict, fmt, summary
from mwsim.history import Answered
from mwsim.membership import WorldLife
from mwsim.scenario import FRONTEND, Property

NAME = Property.GOODPUT


def _answered(f: Facts, a: float, b: float) -> tuple[int, int]:
    """(answered, judged) of the requests admitted in [a, b)."""
    rids = [rid for rid, r in f.requests.items() if a <= r.t < b and judgeable(f, r.t)]
    return sum(isinstance(decided(f, rid), Answered) for rid in rids), len(rids)


def _capacity(f: Facts, x: Injected) -> float:
    """The share of replicas the fault leaves, in the stage it hurts most."""
    hit = x.step.index
    stages: list[list[tuple[str, WorldLife]]] = []
    frontier, stage, seen = [FRONTEND], 0, set()
    while frontier and stage < 64:
        before = min(x.t, x.step.event.at) - 1e-6  # the deployment the fault hit
        options = {r: life for s in frontier for r, life in hops(f, s, before) if r != FRONTEND}
        if not options:
            break
        stages.append(list(options.items()))
        frontier = [r for r in options if r not in seen]
        seen |= set(options)
        stage += 1
    shares = []
    for replicas in stages:
        lost = [
            r
            for r, life in replicas
            if life.end_event == hit
            or any(span.event == hit for span in life.spans)
            or r in x.step.workers
        ]
        shares.append(1 - len(lost) / len(replicas))
    return min(shares, default=1.0)


def check(f: Facts) -> Verdict:
    if not serving(f):
        return Verdict(NAME, PASS, "no serve workload: no requests to judge")
    faults = faults_in_run(f)
    if not faults:
        return Verdict(NAME, PASS, "no fault held: nothing to compare")
    settle = f.scenario.workload.timeout_s
    before_ok, before_n = _answered(f, 0.0, faults[0].t)
    base = before_ok / before_n if before_n else 1.0  # no fault-free stretch: the ideal
    problems: list[Evidence] = []
    said = []
    for x in faults:
        start = x.t + settle
        end = x.end if x.step.event.info.lasting and x.end is not None else f.end
        if end - start < MIN_STRETCH_S:
            continue
        ok, n = _answered(f, start, end)
        if not n:
            continue
        share = _capacity(f, x)
        need = share * base * (1 - GOODPUT_TOLERANCE)
        got = ok / n
        what = f"{x.step.kind} of {x.step.event.subject} at {fmt(x.t)}"
        said.append(f"{what}: {got:.0%} answered (needs {need:.0%})")
        if got < need:
            detail = (
                f"while the {what} held ({fmt(start)} to {fmt(end)}), {ok} of {n} request(s) "
                f"were answered ({got:.0%}); the {share:.0%} of capacity left should answer "
                f"at least {need:.0%} (fault-free {base:.0%}, tolerance {GOODPUT_TOLERANCE:.0%})"
            )
            problems.append(
                Evidence(None, detail, "goodput low during a fault", start, (start, end))
            )
    ok_text = "; ".join(said) or "no fault held long enough to measure (2 s after its timeout)"
    return summary(NAME, problems, ok_text)
