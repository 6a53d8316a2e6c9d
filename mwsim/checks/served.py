"""**served** (the serve workload): every admitted request is answered exactly once with
the right output, or failed with a reason; none is lost or answered twice; and none
fails while a path through replicas no fault touched was open for its whole timeout."""

from __future__ import annotations

from mwsim.checks.index import Facts
from mwsim.checks.requests import decided, judgeable, serving, untouched_path
from mwsim.checks.verdicts import PASS, Evidence, Verdict, fmt, summary
from mwsim.history import Answered, Unserved
from mwsim.scenario import Property

NAME = Property.SERVED


def check(f: Facts) -> Verdict:
    if not serving(f):
        return Verdict(NAME, PASS, "no serve workload: no requests to judge")
    problems: list[Evidence] = []
    timeout = f.scenario.workload.timeout_s
    judged = 0
    for rid in sorted(f.outcomes.keys() - f.requests.keys()):
        stray = f.outcomes[rid][0]
        what = f"request {rid} was {stray.kind} at {fmt(stray.t)} but never admitted"
        problems.append(Evidence(None, what, "an outcome of no request", stray.t))
    for rid, request in sorted(f.requests.items()):
        admitted = request.t
        outcomes = f.outcomes.get(rid, [])
        first = decided(f, rid)
        if first is None:
            if judgeable(f, admitted):
                due = admitted + timeout
                what = (
                    f"request {rid} admitted at {fmt(admitted)} was neither answered nor "
                    f"failed by its timeout at {fmt(due)}"
                )
                problems.append(Evidence(None, what, "request lost", due, (admitted, due)))
            continue
        judged += 1
        if len(outcomes) > 1:
            kinds = ", ".join(f"{o.kind} at {fmt(o.t)}" for o in outcomes)
            what = f"request {rid} admitted at {fmt(admitted)} ended {len(outcomes)} times: {kinds}"
            problems.append(Evidence(None, what, "request ended twice", outcomes[1].t))
        if isinstance(first, Answered) and not first.right:
            via = " -> ".join(first.path) or "?"
            what = f"request {rid} was answered at {fmt(first.t)} with a wrong output (via {via})"
            problems.append(Evidence(None, what, "wrong answer", first.t))
        if isinstance(first, Unserved):
            end = min(admitted + timeout, f.end)
            path = untouched_path(f, admitted, end)
            if path is not None:
                what = (
                    f"request {rid} failed at {fmt(first.t)} ({first.reason}) though the path "
                    f"through {' -> '.join(path)} was untouched by any fault from "
                    f"{fmt(admitted)} to {fmt(end)}"
                )
                problems.append(Evidence(None, what, "failed with a path open", first.t))
    answered = sum(isinstance(decided(f, rid), Answered) for rid in f.requests)
    ok = (
        f"{judged} request(s) ended once: {answered} answered right, {judged - answered} "
        "failed while no path was open"
    )
    return summary(NAME, problems, ok)
