"""What upstream MultiWorld 0.2.3 is known to get wrong (docs/findings.md).

Fuzzing a runtime against MultiWorld as the reference, an example that runs into one of
these cannot be blamed on the runtime and ends the example early; ``known_finding`` lets
the fuzzers steer around them (``avoid_known``). ``REPRODUCERS`` names, per finding, the
scenario whose real run shows it is still there (its ``expect.violations``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mwsim.events import ENDING, Kind, Target
from mwsim.membership import Membership
from mwsim.timing import RuntimeModel

if TYPE_CHECKING:
    from mwsim.scenario import Scenario

FINDINGS: dict[int | str, str] = {
    1: "a member lost from an all-reduce world makes the survivors' sums wrong, silently",
    2: "a hung rank 0 (it hosts the world's store) is never detected, and the members "
    "whose watchdogs wait on its store stop heartbeating on their other worlds, which "
    "their peers then tear down",
    3: "a worker lost or hung before its first watchdog heartbeat on a world freezes the "
    "watchdogs of the world's other members, whose healthy worlds are then torn down",
    5: "a member silently cut off from its world's store host (rank 0's host) never "
    "reports the world broken; only rank 0's side does",
    6: "members silently cut off from each other while both still reach their world's "
    "store host: the world stops serving and nobody ever reports it broken",
    7: "a world whose store host (rank 0's host) is powered off is never reported broken "
    "by its other members",
    8: "a process in many worlds is watched late: its watchdog takes one new world per "
    "0.3 s tick and calls every world's store one at a time, so silent faults in the "
    "worlds it formed last are reported late or not at all",
}

REPRODUCERS = {
    1: "scenarios/allreduce-lose-member.yaml",
    2: "scenarios/fanin-leader-hang.yaml",
    3: "scenarios/regressions/finding-early-loss-freezes-watchdog.yaml",
    5: "scenarios/partition-cut-from-store.yaml",
    6: "scenarios/partition-members-cut-apart.yaml",
    7: "scenarios/power-off-store-host.yaml",
    8: "scenarios/regressions/finding-watchdog-one-world-per-tick.yaml",
}

#: What ``known_finding`` is, for any runtime (``Runtime.known_finding``): the known
#: finding an event (its fields, at its time, given the membership state just before it
#: and the workload's kind) would run into; None: none.
KnownFinding = Callable[[Membership, dict[str, Any], float, str], "int | str | None"]

#: A world's members have written their first watchdog heartbeat by then: MultiWorld
#: ticks every 0.3 s, a joiner takes up to about 0.4 s more to form its worlds.
FIRST_HEARTBEAT_S = 1.0
#: A rank 0 in more worlds than this watches some of them late (finding 8: 40 worlds
#: showed it; its watchdog starts watching one new world per 0.3 s tick).
MANY_WORLDS = 16


def known_finding(
    timeline: Membership, fields: dict[str, Any], at: float, workload: str
) -> int | None:
    """The number of the known finding the event ``fields`` at ``at`` would run into,
    given the membership state ``timeline`` just before it and the scenario's workload
    kind (None: none)."""
    topology, kind = timeline.topology, Kind(fields["do"])
    if kind.info.gpu:  # the watchdog's heartbeats go on: none of these findings applies
        return None
    if kind is Kind.PARTITION:
        return _partition_finding(timeline, fields)
    if not kind.info.breaks:
        return None
    if kind.info.target is Target.HOST:
        if not topology.has_host(fields["target"]):
            return None
        targets = topology.workers_on(fields["target"])
    else:
        targets = [fields["target"]] if topology.has_worker(fields["target"]) else []
    for worker in targets:
        worlds = topology.worlds_of(worker)
        if kind in ENDING and worlds and workload == "allreduce":
            return 1
        if kind is Kind.HANG and any(topology.rank(w, worker) == 0 for w in worlds):
            return 2
        young = [w for w in worlds if at - timeline.worlds[w].start < FIRST_HEARTBEAT_S]
        if any(topology.rank(w, worker) != 0 for w in young):  # rank 0's loss ends the store
            return 3
        if kind.info.silent and any(
            len(topology.worlds_of(topology.members(w)[0])) > MANY_WORLDS for w in worlds
        ):
            return 8
        if kind is Kind.POWER_OFF and any(
            topology.rank(w, worker) == 0
            and any(topology.host_of(m) != fields["target"] for m in topology.members(w))
            for w in worlds
        ):
            return 7
    return None


def _partition_finding(timeline: Membership, fields: dict[str, Any]) -> int | None:
    """Findings 5 and 6: a silent cut long enough for the watchdog to matter."""
    if fields.get("mode", "drop") != "drop":
        return None
    for_s = fields.get("for_s")
    if for_s is not None and for_s < RuntimeModel().watchdog_window()[0]:
        return None  # survived before any watchdog could look
    one_way = "groups" not in fields
    sides = [fields["from"], fields["to"]] if one_way else fields["groups"]
    found = None
    for world, across in timeline.topology.cut(sides, one_way).items():
        store = timeline.topology.members(world)[0]
        if any(m == store or store in others for m, others in across.items()):
            return 5
        found = 6
    return found


def known_for(runtime: str, reference: str | None = None) -> KnownFinding | None:
    """The known findings to steer around when fuzzing ``runtime``: its own declared ones
    and the reference's (None: neither declares any)."""
    from mwsim import runtimes  # its adapters import this module

    names = [runtime] + ([reference] if reference and reference != runtime else [])
    declared = [cls for cls in map(runtimes.load, names) if cls.known_findings]
    if not declared:
        return None

    def known(timeline: Membership, fields: dict[str, Any], at: float, workload: str) -> Any:
        for cls in declared:
            found = cls.known_finding(timeline, fields, at, workload)
            if found is not None:
                return found
        return None

    return known


def findings_in(scenario: Scenario, known: KnownFinding) -> list[int | str]:
    """The known findings the scenario's events run into, in time order."""
    timeline = scenario.membership()
    workload = scenario.workload.kind
    found: list[int | str] = []
    order = sorted(range(len(scenario.events)), key=lambda i: (scenario.events[i].at, i))
    for index in order:
        event = scenario.events[index]
        fields = event.model_dump(mode="json", by_alias=True, exclude_none=True)
        at = float(fields.pop("at"))
        hit = known(timeline, fields, at, workload)
        if hit is not None:
            found.append(hit)
        timeline.try_apply(event)
    return found
