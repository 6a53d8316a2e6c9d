"""What each fault cost a serve run: the requests it failed or made late, from the model
run with and without that fault (a what-if), for the report."""

from __future__ import annotations

from dataclasses import dataclass

from mwsim.errors import PlanError
from mwsim.history import Answered, History, Unserved
from mwsim.scenario import Scenario
from mwsim.sim import simulate
from mwsim.timing import RuntimeModel

#: A what-if is one model run per fault: scenarios with more faults, or more requests
#: than this (their rate times their duration), are not priced.
MAX_FAULTS = 8
MAX_REQUESTS = 50_000


@dataclass(frozen=True)
class FaultCost:
    """What the run lost to one fault (``failed``, ``late``: more than without it);
    ``note`` when it could not be priced."""

    event: int  # its index in the scenario's events
    what: str  # "crash of w2 at 4.00 s"
    failed: int = 0
    late: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"event": self.event, "what": self.what}
        if self.note:
            out["note"] = self.note
        else:
            out.update(failed=self.failed, late=self.late)
        return out

    def line(self) -> str:
        if self.note:
            return f"{self.what}: {self.note}"
        return f"{self.what}: {self.failed} failed, {self.late} late"


def _losses(history: History, bound_s: float | None) -> tuple[int, int]:
    failed = len(history.of(Unserved))
    late = 0 if bound_s is None else sum(a.latency_s > bound_s for a in history.of(Answered))
    return failed, late


def fault_costs(
    scenario: Scenario, model: RuntimeModel | None = None, seed: int | None = None
) -> list[FaultCost]:
    """Per fault of a serve scenario, the requests failed and late (over
    ``expect.slo.latency_ms``; none counted without it) with it, less those without it,
    on the model. Empty for other workloads, more than ``MAX_FAULTS`` faults or more
    than ``MAX_REQUESTS`` requests."""
    workload = scenario.workload
    if workload.kind != "serve" or workload.rate_per_s * scenario.duration_s > MAX_REQUESTS:
        return []
    faults = [i for i, e in enumerate(scenario.events) if e.info.fault]
    if not faults or len(faults) > MAX_FAULTS:
        return []
    slo = scenario.expect.slo
    bound = slo.latency_ms / 1000 if slo is not None else None
    failed, late = _losses(simulate(scenario, seed=seed, model=model), bound)
    costs = []
    for index in faults:
        event = scenario.events[index]
        what = f"{event.kind} of {event.subject} at {event.at:.2f} s"
        rest = [e for i, e in enumerate(scenario.events) if i != index]
        without = scenario.model_copy(update={"events": rest})
        try:
            without.plan  # noqa: B018 (a later event may need this one)
        except PlanError:
            costs.append(FaultCost(index, what, note="later events depend on it: not priced"))
            continue
        f0, l0 = _losses(simulate(without, seed=seed, model=model), bound)
        costs.append(FaultCost(index, what, failed - f0, late - l0))
    return costs
