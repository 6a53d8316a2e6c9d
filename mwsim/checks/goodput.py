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
    in_force_until,
    judgeable,
    serving,
    touched,
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


def _capacity(f: Facts, held: list[Injected], at: float) -> float:
    """The share of replicas the faults ``held`` leave at ``at``, in the stage they hurt
    most, of those with a way back to the frontend before them (0 when one of them
    stops the frontend)."""
    if any(FRONTEND in x.step.workers for x in held):
        return 0.0
    hit = {x.step.index for x in held}
    workers = {w for x in held for w in x.step.workers}
    before = min(min(x.t, x.step.event.at) for x in held) - 1e-6  # the deployment hit
    back = _leading_back(f, before)
    stages: list[list[tuple[str, WorldLife]]] = []
    frontier, seen = [FRONTEND], set()
    while frontier and len(stages) < 64:
        options = {
            r: life
            for s in frontier
            for r, life in hops(f, s, before)
            if r != FRONTEND and r in back
        }
        if not options:
            break
        stages.append(list(options.items()))
        frontier = [r for r in options if r not in seen]
        seen |= set(options)
    out = f.scenario.request_edges()
    shares = []
    for replicas in stages:
        lost = [
            r
            for r, life in replicas
            if r in workers
            or life.end_event in hit
            or any(span.event in hit for span in life.spans)
            or any(touched(f, w, before, at) for w in [life, *(w for _, w in out.get(r, []))])
        ]
        shares.append(1 - len(lost) / len(replicas))
    return min(shares, default=0.0)


def _leading_back(f: Facts, t: float) -> set[str]:
    """The workers a request at ``t`` can go on from and reach the frontend."""
    good = {FRONTEND}
    grew = True
    while grew:
        grew = False
        for sender in f.scenario.request_edges():
            if sender not in good and any(r in good for r, _ in hops(f, sender, t)):
                good.add(sender)
                grew = True
    return good


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
    changes = sorted(
        {e.at for e in f.scenario.events} | {x.t for x in faults} | set(f.scaled.values())
    )
    for i, x in enumerate(faults):
        # from its requests' settling to its end or the next change of the deployment
        # (a later fault's stretch is judged with every fault then in force)
        start = x.t + settle
        end = min(in_force_until(f, x), f.end) if x.step.event.info.lasting else f.end
        end = min([end, *(t for t in changes if t > x.t)])
        if end - start < MIN_STRETCH_S:
            continue
        ok, n = _answered(f, start, end)
        if not n:
            continue
        held = [  # a crash's loss lasts; a lasting fault while it holds
            y
            for y in faults[: i + 1]
            if not y.step.event.info.lasting or in_force_until(f, y) > start
        ]
        share = _capacity(f, held, start)
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
