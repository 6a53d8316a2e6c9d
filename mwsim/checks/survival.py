"""**survival**: a worker no fault targeted does not die."""

from __future__ import annotations

from mwsim.checks.index import Facts
from mwsim.checks.verdicts import Evidence, Verdict, fmt, summary
from mwsim.events import Target
from mwsim.scenario import Property

NAME = Property.SURVIVAL


def _targets(f: Facts, worker: str, t: float) -> bool:
    """Did a fault act on ``worker``'s process by ``t`` (its death may follow from it)?
    Faults on links (partitions, degraded links) act on no process."""
    for x in f.faults.values():
        info = x.step.event.info
        acts = info.target in (Target.WORKER, Target.HOST) and (info.ends or not info.network)
        if acts and x.t <= t and worker in x.step.workers:
            return True
    return False


def check(f: Facts) -> Verdict:
    """A worker no fault targeted does not exit or die while the run is judged."""
    problems: list[Evidence] = []
    for e, last in f.unexpected:
        worker = e.worker
        if e.t > f.end or _targets(f, worker, e.t):
            continue
        code = e.code
        if code is None:
            how = "ended"
        elif code < 0:
            how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        if last is None:
            before = "it had recorded nothing"
        else:
            world = getattr(last, "world", None)
            what = last.kind + (f" on {world}" if world else "")
            before = f"its last record: {what} at {fmt(last.t)}"
        detail = f"{worker} {how} at {fmt(e.t)} though no fault targeted it ({before})"
        problems.append(Evidence(None, detail, f"an untargeted worker {how}", e.t))
    return summary(
        NAME, problems, "every worker no fault targeted lived through the judged interval"
    )
