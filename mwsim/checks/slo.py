"""**slo** (the serve workload): in each phase of the run (before the first fault, while
faults and their requests' timeouts are in force, after), at least
``expect.slo.attainment`` of the requests admitted are answered within
``expect.slo.latency_ms``; p50 and p99 latency are the evidence."""

from __future__ import annotations

from mwsim.checks.index import Facts
from mwsim.checks.requests import decided, judgeable, percentile, phases, serving
from mwsim.checks.verdicts import PASS, Evidence, Verdict, summary
from mwsim.history import Answered
from mwsim.scenario import Property

NAME = Property.SLO


def check(f: Facts) -> Verdict:
    if not serving(f):
        return Verdict(NAME, PASS, "no serve workload: no requests to judge")
    slo = f.scenario.expect.slo
    if slo is None:
        return Verdict(NAME, PASS, "no expect.slo: no service level asked")
    bound = slo.latency_ms / 1000
    problems: list[Evidence] = []
    said = []
    for phase in phases(f):
        rids = [
            rid
            for rid, r in f.requests.items()
            if phase.start <= r.t < phase.end and (decided(f, rid) or judgeable(f, r.t))
        ]
        if not rids:
            continue
        latencies = []
        for rid in rids:
            got = decided(f, rid)
            latencies.append(got.latency_s if isinstance(got, Answered) else float("inf"))
        share = sum(x <= bound for x in latencies) / len(latencies)
        p50, p99 = (percentile(latencies, q) * 1000 for q in (0.5, 0.99))
        stats = f"p50 {_ms(p50)}, p99 {_ms(p99)}"
        line = f"{phase.name} ({phase.start:.1f}-{phase.end:.1f} s): {share:.1%} of {len(rids)}"
        said.append(f"{line} ({stats})")
        if share < slo.attainment:
            what = (
                f"{line} request(s) answered within {slo.latency_ms:g} ms, below "
                f"{slo.attainment:.0%} ({stats}; unanswered ones count as late)"
            )
            window = (phase.start, phase.end)
            problems.append(
                Evidence(None, what, f"attainment low {phase.name}", phase.start, window)
            )
    ok = f"within {slo.latency_ms:g} ms: " + ("; ".join(said) or "no request was judged")
    return summary(NAME, problems, ok)


def _ms(value: float) -> str:
    return "none answered" if value == float("inf") else f"{value:.1f} ms"
