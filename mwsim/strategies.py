"""Hypothesis strategies for mwsim's inputs: topologies, events, scenarios.

Shipped with the library (as Trio ships its testing helpers) so users can fuzz their own
runtimes and shapes. Everything drawn is valid by construction: events are proposed from
the membership state at their time (``Proposer``, one entry per kind of the vocabulary)
and vetted by the validator's own timeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from hypothesis import strategies as st

from mwsim import topology as topo
from mwsim.events import Kind, parse_event
from mwsim.findings import KnownFinding, known_finding
from mwsim.membership import Membership
from mwsim.scenario import FRONTEND, Scenario, parse_scenario
from mwsim.timing import judged_end


@st.composite
def explicit_topologies(
    draw: st.DrawFn, max_hosts: int = 3, max_workers: int = 8, max_worlds: int = 8
) -> topo.Topology:
    """An explicit topology: random hosts, workers placed on them, worlds of 2+ workers."""
    hosts = [f"h{i}" for i in range(draw(st.integers(1, max_hosts)))]
    workers = [f"w{i}" for i in range(draw(st.integers(2, max_workers)))]
    placement = {w: draw(st.sampled_from(hosts)) for w in workers}
    worlds: dict[str, list[str]] = {}
    for i in range(draw(st.integers(1, max_worlds))):
        members = draw(st.lists(st.sampled_from(workers), min_size=2, max_size=4, unique=True))
        worlds[f"x{i}"] = members
    return topo.explicit(
        dict.fromkeys(hosts, 0), {w: (h, None) for w, h in placement.items()}, worlds
    )


def fan_in_topologies(max_workers: int = 16, max_hosts: int = 4) -> st.SearchStrategy:
    return st.builds(topo.fan_in, st.integers(1, max_workers), st.integers(1, max_hosts))


def pipeline_topologies(max_stages: int = 4, max_replicas: int = 3) -> st.SearchStrategy:
    return st.builds(
        topo.pipeline,
        st.lists(st.integers(1, max_replicas), min_size=1, max_size=max_stages),
        st.integers(1, 4),
    )


def topologies() -> st.SearchStrategy[topo.Topology]:
    """Any topology shape mwsim generates."""
    return st.one_of(explicit_topologies(), fan_in_topologies(), pipeline_topologies())


# -- scenarios ----------------------------------------------------------------------------

#: Every kind, in the order the fuzzers enable them.
#: What the fuzzers draw by default: every kind but the GPU faults (their scenarios would
#: need backend nccl and a GPU per worker; the fuzzers draw gloo deployments).
FUZZ_KINDS = tuple(k for k in Kind if not k.info.gpu)

#: May the fuzzer propose this event (its fields, without ``at``)? Say, not a known finding.
Allowed = Callable[[Kind, dict[str, Any]], bool]
Draw = Callable[[st.SearchStrategy[Any]], Any]  # ``draw`` of @composite, or DataObject.draw


def tenths(low: float, high: float) -> st.SearchStrategy[float]:
    """Seconds in tenths from ``low`` to ``high``."""
    return st.integers(round(low * 10), round(high * 10)).map(lambda n: n / 10)


class Proposer:
    """Draws the fields of one event of a kind from the membership state now (None:
    nothing fits). ``allowed(kind, fields)`` may veto proposals (say, known findings):
    targets are vetted before one is drawn, other events once drawn."""

    def __init__(
        self,
        draw: Draw,
        timeline: Membership,
        allowed: Allowed | None = None,
        stages: list[list[str]] | None = None,
        fan_in: bool = False,
    ) -> None:
        self.draw, self.timeline, self.fresh = draw, timeline, 0
        self.allowed: Allowed = allowed or (lambda kind, fields: True)
        #: serving: the replicas of each stage (a fan-in's one stage); joins and new
        #: worlds then add replicas and routes requests can take
        self.stages, self.fan_in = stages, fan_in
        self.kinds: dict[Kind, Callable[[Kind], dict[str, Any] | None]] = {
            Kind.CRASH: self._worker_fault,
            Kind.HANG: self._worker_fault,
            Kind.LEAVE: self._worker_fault,
            Kind.SLOW: self._worker_fault,
            Kind.CRASH_HOST: self._host_fault,
            Kind.JOIN: self._join,
            Kind.ADD_WORLD: self._add_world,
            Kind.REMOVE_WORLD: self._remove_world,
            Kind.PARTITION: self._partition,
            Kind.DEGRADE: self._degrade,
            Kind.POWER_OFF: self._host_fault,
            Kind.GPU_HANG: self._gpu_fault,
            Kind.GPU_ERROR: self._gpu_fault,
            Kind.GPU_SLOW: self._gpu_fault,
        }

    def _pick(self, kind: Kind, options: list[str], key: str = "target") -> str | None:
        options = [o for o in options if self.allowed(kind, {key: o})]
        return self.draw(st.sampled_from(options)) if options else None

    def __call__(self, kind: Kind) -> dict[str, Any] | None:
        fields = self.kinds[kind](kind)
        if fields is None or not self.allowed(kind, fields):
            return None
        return {"do": kind.value, **fields}

    def _worker_fault(self, kind: Kind) -> dict[str, Any] | None:
        tl = self.timeline
        target = self._pick(kind, tl.topology.workers() if kind is Kind.CRASH else tl.running())
        if target is None:
            return None
        fields: dict[str, Any] = {"target": target}
        if kind is Kind.HANG:
            fields["for_s"] = self.draw(st.none() | tenths(0.5, 9.0))
        elif kind is Kind.SLOW:
            fields["delay_ms"] = self.draw(st.sampled_from([50.0, 100.0, 200.0]))
            fields["for_s"] = self.draw(tenths(0.5, 3.0))
        return fields

    def _gpu_fault(self, kind: Kind) -> dict[str, Any] | None:
        """On a running worker's GPU, where workers have GPUs (backend nccl)."""
        if self.timeline.backend != "nccl":
            return None
        target = self._pick(kind, self.timeline.running())
        if target is None:
            return None
        fields: dict[str, Any] = {"target": target}
        if kind is Kind.GPU_HANG:
            fields["for_s"] = self.draw(st.none() | tenths(0.5, 9.0))
        elif kind is Kind.GPU_SLOW:
            fields["factor"] = self.draw(st.sampled_from([2.0, 4.0, 10.0]))
            fields["for_s"] = self.draw(tenths(0.5, 3.0))
        return fields

    def _up_hosts(self) -> list[str]:
        tl = self.timeline
        return [h for h in tl.topology.hosts() if h not in tl.off]

    def _host_fault(self, kind: Kind) -> dict[str, Any] | None:
        hosts = self._up_hosts()
        if kind is Kind.POWER_OFF:
            hosts = [h for h in hosts if self.timeline.topology.workers_on(h)]
        target = self._pick(kind, hosts)
        return None if target is None else {"target": target}

    def _partition(self, kind: Kind) -> dict[str, Any] | None:
        """A split of some free hosts into two sides (both ways, or one way), silent or
        resetting, healed after a while or never."""
        free = [h for h in self._up_hosts() if h not in self.timeline.cuts]
        if len(free) < 2:
            return None
        hosts = self.draw(st.permutations(free))
        split = self.draw(st.integers(1, len(hosts) - 1))
        end = self.draw(st.integers(split + 1, len(hosts)))
        sides = [sorted(hosts[:split]), sorted(hosts[split:end])]
        fields: dict[str, Any] = (
            {"from": sides[0], "to": sides[1]} if self.draw(st.booleans()) else {"groups": sides}
        )
        fields["mode"] = self.draw(st.sampled_from(["drop", "reset"]))
        fields["for_s"] = self.draw(st.none() | tenths(0.5, 6.0))
        return fields

    def _degrade(self, kind: Kind) -> dict[str, Any] | None:
        hosts = [h for h in self._up_hosts() if h not in self.timeline.degraded]
        target = self._pick(kind, hosts)
        if target is None:
            return None
        knobs = {
            "delay_ms": st.sampled_from([10.0, 50.0]),
            "jitter_ms": st.sampled_from([2.0, 10.0]),
            "loss_pct": st.sampled_from([1.0, 5.0, 10.0]),
            "rate_mbit": st.sampled_from([10.0, 100.0]),
        }
        chosen = self.draw(st.sets(st.sampled_from(sorted(knobs)), min_size=1))
        fields: dict[str, Any] = {"target": target}
        fields.update({name: self.draw(knobs[name]) for name in sorted(chosen)})
        fields["for_s"] = self.draw(st.none() | tenths(0.5, 4.0))
        return fields

    def _neighbours(self, stage: int) -> tuple[list[str], list[str]]:
        """Serving: the running workers that send to stage ``stage``, and those it sends
        to (the frontend before the first stage and after the last)."""
        stages = self.stages
        assert stages is not None
        running = set(self.timeline.running())

        def at(k: int) -> list[str]:
            if k < 0 or k >= len(stages):
                return [FRONTEND] if FRONTEND in running else []
            return [w for w in stages[k] if w in running]

        return at(stage - 1), at(stage + 1)

    def _serve_join(self, kind: Kind) -> dict[str, Any] | None:
        """A new replica of a stage, with a world from a sender and one to a receiver."""
        assert self.stages is not None
        stage = self.draw(st.integers(0, len(self.stages) - 1))
        senders, receivers = self._neighbours(stage)
        if not senders or not receivers:
            return None
        self.fresh += 1
        worker = f"j{self.fresh}"
        sender, receiver = (
            self.draw(st.sampled_from(senders)),
            self.draw(st.sampled_from(receivers)),
        )
        worlds = (
            {f"w{worker}": [FRONTEND, worker]}
            if self.fan_in
            else {f"w{worker}i": [worker, sender], f"w{worker}o": [receiver, worker]}
        )
        self.stages[stage].append(worker)
        return {
            "worker": worker,
            "host": self.draw(st.sampled_from(self.timeline.topology.hosts())),
            "worlds": worlds,
        }

    def _serve_add_world(self, kind: Kind) -> dict[str, Any] | None:
        """A new route between a replica and the stage after it (a receiver first)."""
        assert self.stages is not None
        stage = self.draw(st.integers(0, len(self.stages) - 1))
        running = set(self.timeline.running())
        replicas = [w for w in self.stages[stage] if w in running]
        _, receivers = self._neighbours(stage)
        if not replicas or not receivers:
            return None
        sender, receiver = (
            self.draw(st.sampled_from(replicas)),
            self.draw(st.sampled_from(receivers)),
        )
        self.fresh += 1
        members = [FRONTEND, sender] if self.fan_in else [receiver, sender]
        return {"world": f"x{self.fresh}", "members": members}

    def _join(self, kind: Kind) -> dict[str, Any] | None:
        if self.stages is not None:
            return self._serve_join(kind)
        tl = self.timeline
        partner = self._pick(kind, tl.running())
        if partner is None:
            return None
        self.fresh += 1
        worker = f"j{self.fresh}"
        return {
            "worker": worker,
            "host": self.draw(st.sampled_from(tl.topology.hosts())),
            "worlds": {f"w{worker}": [partner, worker]},
        }

    def _add_world(self, kind: Kind) -> dict[str, Any] | None:
        if self.stages is not None:
            return self._serve_add_world(kind)
        running = self.timeline.running()
        if len(running) < 2:
            return None
        members = self.draw(st.lists(st.sampled_from(running), min_size=2, max_size=3, unique=True))
        self.fresh += 1
        return {"world": f"x{self.fresh}", "members": members}

    def _remove_world(self, kind: Kind) -> dict[str, Any] | None:
        worlds = self.timeline.topology.worlds()
        if self.stages is not None and not self.fan_in:  # a scale-in, never a dead end
            worlds = [w for w in worlds if self._spare_route(w)]
        world = self._pick(kind, worlds, key="world")
        return None if world is None else {"world": world}

    def _spare_route(self, world: str) -> bool:
        """Serving on a pipeline: does the sender on ``world`` (its rank 1) keep another
        route (the frontend's worlds into the first stage only take a replica out)?"""
        topology = self.timeline.topology
        sender = topology.members(world)[1]
        if sender == FRONTEND:
            return True
        routes = [w for w in topology.worlds_of(sender) if topology.members(w)[1] == sender]
        return len(routes) > 1


def serve_workloads(draw: Draw) -> dict[str, Any]:
    """A ``serve`` workload: its load, routing, retries, deadline and model slice."""
    arrivals = draw(st.sampled_from(["constant", "poisson", "bursty"]))
    workload: dict[str, Any] = {
        "kind": "serve",
        "rate_per_s": draw(st.sampled_from([10, 20, 40, 80])),
        "arrivals": arrivals,
        "route": draw(st.sampled_from(["round_robin", "least_outstanding"])),
        "retries": draw(st.integers(2, 3)),
        "timeout_ms": draw(st.sampled_from([1000, 2000, 4000])),
    }
    if arrivals == "bursty":
        workload["cv"] = draw(st.sampled_from([1.5, 3.0]))
    if draw(st.booleans()):
        workload["model"] = {"layers": draw(st.integers(1, 2)), "width": 32}
    return workload


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    max_workers: int = 4,
    max_events: int = 5,
    min_events: int = 0,
    kinds: tuple[Kind, ...] = FUZZ_KINDS,
    workloads: tuple[str, ...] = ("stream", "request", "allreduce", "serve"),
    shapes: tuple[str, ...] = ("fan_in", "explicit", "pipeline"),
    name: str = "fuzz",
    avoid_known: bool | KnownFinding = False,
) -> Any:
    """A small scenario whose events are valid by construction.

    Swarm style: each example enables its own subset of ``kinds``. Every event is drawn
    from the membership state at its time and vetted by the validator's own timeline, and
    the run lasts long enough after the last event for every bound to be judged. With
    ``avoid_known``, no event runs into a known finding: those it names (a runtime's
    ``known_finding``), or for ``True`` upstream MultiWorld's (``mwsim.findings``).
    A ``serve`` workload runs on a fan-in or a pipeline (never explicit worlds: requests
    need a route), and its joins and new worlds add replicas and routes
    (``serve_workloads``, ``Proposer``'s ``stages``).
    """
    known = known_finding if avoid_known is True else avoid_known or None
    kind = draw(st.sampled_from(workloads))
    if kind == "serve":  # requests need a route: no explicit worlds
        shape = draw(st.sampled_from([s for s in shapes if s != "explicit"] or ["fan_in"]))
    else:  # the other workloads' pipelines are explicit worlds like any other
        shape = draw(st.sampled_from([s for s in shapes if s != "pipeline"] or ["fan_in"]))
    hosts = draw(st.integers(1, 2))
    if shape == "fan_in":
        topology: dict[str, Any] = {
            "generator": "fan_in",
            "workers": draw(st.integers(2, max_workers)),
            "hosts": hosts,
        }
    elif shape == "pipeline":
        counts = draw(st.lists(st.integers(1, 2), min_size=1, max_size=2))
        counts[draw(st.integers(0, len(counts) - 1))] = 2  # a stage with a spare replica
        topology = {"generator": "pipeline", "stages": counts, "hosts": hosts}
    else:
        names = [f"n{i}" for i in range(draw(st.integers(3, max_workers + 1)))]
        worlds: dict[str, list[str]] = {}
        for i in range(draw(st.integers(1, 3))):
            members = draw(st.lists(st.sampled_from(names), min_size=2, max_size=3, unique=True))
            worlds[f"y{i}"] = members
        topology = {
            "generator": "explicit",
            "hosts": {f"h{i}": {"gpus": 0} for i in range(hosts)},
            "workers": {n: {"host": f"h{draw(st.integers(0, hosts - 1))}"} for n in names},
            "worlds": worlds,
        }
    data: dict[str, Any] = {
        "mwsim": 1,
        "name": name,
        "description": "drawn by mwsim.strategies.scenarios",
        "topology": topology,
        "workload": serve_workloads(draw) if kind == "serve" else {"kind": kind, "interval_ms": 20},
        "duration_s": 3600.0,
    }
    skeleton = Scenario.model_validate(data)
    timeline = skeleton.membership()
    stages: list[list[str]] | None = None
    if kind == "serve":
        replicas = [w for w in timeline.topology.workers() if w != FRONTEND]
        stages = [replicas] if shape == "fan_in" else topo.pipeline_stages(topology["stages"])
    propose = Proposer(draw, timeline, stages=stages, fan_in=shape == "fan_in")
    enabled = sorted(draw(st.sets(st.sampled_from(kinds), min_size=1)))
    workload = skeleton.workload.kind
    events: list[dict[str, Any]] = []
    t = 0.0
    for _ in range(draw(st.integers(min_events, max_events))):
        t = round(t + draw(tenths(0.3, 1.5)), 1)
        fields = propose(draw(st.sampled_from(enabled)))
        if fields is None:
            continue
        if known is not None and known(timeline, fields, t, workload) is not None:
            continue
        event = {"at": t, **fields}
        if timeline.try_apply(parse_event(event)):
            events.append(event)
    data["events"] = events
    data["duration_s"] = t + 0.1
    drawn = parse_scenario(yaml.safe_dump(data, sort_keys=False), f"<{name}>")
    return drawn.model_copy(update={"duration_s": judged_end(drawn)})
