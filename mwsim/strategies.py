"""Hypothesis strategies for mwsim's inputs: topologies, faults, scenarios.

Shipped with the library (as Trio ships its testing helpers) so users can fuzz their own
runtimes and shapes. Everything drawn is valid by construction.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import strategies as st
from pydantic import TypeAdapter

from mwsim import topology as topo
from mwsim.findings import known_finding
from mwsim.membership import Timeline, plan
from mwsim.scenario import Event, Scenario, parse_scenario
from mwsim.sim.model import detection_window, model_for

_EVENT = TypeAdapter(Event)


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


@st.composite
def faults(draw: st.DrawFn, topology: topo.Topology, max_faults: int = 4) -> list[topo.Fault]:
    """Faults on distinct targets of ``topology`` (worker faults and host crashes)."""
    chosen: list[topo.Fault] = []
    for _ in range(draw(st.integers(0, max_faults))):
        if draw(st.booleans()):
            kind = draw(st.sampled_from(topo.WORKER_FAULTS))
            chosen.append(topo.Fault(kind, draw(st.sampled_from(topology.workers()))))
        else:
            chosen.append(topo.Fault("crash_host", draw(st.sampled_from(topology.hosts()))))
    return chosen


# -- scenarios ----------------------------------------------------------------------------

FUZZ_KINDS = ("crash", "hang", "leave", "slow", "crash_host", "join", "add_world", "remove_world")
#: The least quiet time after the last event (ops must be seen flowing again).
MIN_TAIL_S = 2.0


def _tenths(low: float, high: float) -> st.SearchStrategy[float]:
    return st.integers(round(low * 10), round(high * 10)).map(lambda n: n / 10)


class Proposer:
    """Draws one event of a kind from the current membership state (None: nothing fits)."""

    def __init__(self, draw: st.DrawFn, timeline: Any) -> None:
        self.draw, self.timeline, self.fresh = draw, timeline, 0

    def _pick(self, options: list[str]) -> str | None:
        return self.draw(st.sampled_from(options)) if options else None

    def __call__(self, kind: str) -> dict[str, Any] | None:
        draw, tl = self.draw, self.timeline
        running = tl.running()
        if kind in ("crash", "leave", "hang", "slow"):
            target = self._pick(tl.topology.workers() if kind == "crash" else running)
            if target is None:
                return None
            fields: dict[str, Any] = {"do": kind, "target": target}
            if kind == "hang":
                fields["for_s"] = draw(st.none() | _tenths(0.5, 9.0))
            elif kind == "slow":
                fields["delay_ms"] = draw(st.sampled_from([50.0, 100.0, 200.0]))
                fields["for_s"] = draw(_tenths(0.5, 3.0))
            return fields
        if kind == "crash_host":
            return {"do": kind, "target": self._pick(tl.topology.hosts())}
        if kind == "join":
            partner = self._pick(running)
            if partner is None:
                return None
            self.fresh += 1
            worker = f"j{self.fresh}"
            return {
                "do": "join",
                "worker": worker,
                "host": self._pick(tl.topology.hosts()),
                "worlds": {f"w{worker}": [partner, worker]},
            }
        if kind == "add_world":
            if len(running) < 2:
                return None
            members = draw(st.lists(st.sampled_from(running), min_size=2, max_size=3, unique=True))
            self.fresh += 1
            return {"do": "add_world", "world": f"x{self.fresh}", "members": members}
        world = self._pick(tl.topology.worlds())
        return None if world is None else {"do": "remove_world", "world": world}


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    max_workers: int = 4,
    max_events: int = 5,
    min_events: int = 0,
    kinds: tuple[str, ...] = FUZZ_KINDS,
    workloads: tuple[str, ...] = ("stream", "request", "allreduce"),
    shapes: tuple[str, ...] = ("fan_in", "explicit"),
    name: str = "fuzz",
    avoid_known: bool = False,
) -> Any:
    """A small scenario whose events are valid by construction.

    Swarm style: each example enables its own subset of ``kinds``. Every event is drawn
    from the membership state at its time and vetted by the validator's own timeline, and
    the run lasts long enough after the last event for every bound to be judged. With
    ``avoid_known``, no event runs into a known upstream finding (``mwsim.findings``).
    """
    shape = draw(st.sampled_from(shapes))
    hosts = draw(st.integers(1, 2))
    if shape == "fan_in":
        topology: dict[str, Any] = {
            "generator": "fan_in",
            "workers": draw(st.integers(2, max_workers)),
            "hosts": hosts,
        }
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
        "workload": {"kind": draw(st.sampled_from(workloads)), "interval_ms": 20},
        "duration_s": 3600.0,
    }
    skeleton = Scenario.model_validate(data)
    timeline = Timeline(skeleton, skeleton.build_topology())
    propose = Proposer(draw, timeline)
    enabled = sorted(draw(st.sets(st.sampled_from(kinds), min_size=1)))
    events: list[dict[str, Any]] = []
    t = 0.0
    for _ in range(draw(st.integers(min_events, max_events))):
        t = round(t + draw(_tenths(0.3, 1.5)), 1)
        fields = propose(draw(st.sampled_from(enabled)))
        if fields is None:
            continue
        if avoid_known and known_finding(timeline, fields, t) is not None:
            continue
        event = {"at": t, **fields}
        if timeline.try_apply(_EVENT.validate_python(event)):
            events.append(event)
    data["events"] = events
    data["duration_s"] = t + 0.1
    drawn = parse_scenario(yaml.safe_dump(data, sort_keys=False), f"<{name}>")
    return drawn.model_copy(update={"duration_s": judged_end(drawn)})


def judged_end(scenario: Any, margin_s: float = 0.5, min_tail_s: float = MIN_TAIL_S) -> float:
    """How long a run must last for every bound of its events to fall inside it: the last
    detection deadline (from the runtime model) or join bound, plus a margin."""
    model = model_for(scenario.runtime)
    interval = scenario.workload.interval_ms / 1000
    p = plan(scenario)
    end = max((step.event.at for step in p.steps), default=0.0) + min_tail_s
    for step in p.steps:
        ev = step.event
        if ev.do in ("join", "add_world"):
            bound = model.join_bound_s if ev.do == "join" else model.add_world_bound_s
            end = max(end, ev.at + bound)
            continue
        if ev.do not in ("crash", "leave", "crash_host", "hang"):
            continue
        for life in p.worlds:
            if step.index != life.end_event and all(x.event != step.index for x in life.spans):
                continue
            bad = [life.members.index(m) for m in life.members if m in step.workers]
            for rank in range(len(life.members)):
                if rank in bad:
                    continue
                hi = min(
                    detection_window(model, scenario.workload.kind, interval, ev.do, rank, b)[1]
                    for b in bad
                )
                end = max(end, ev.at + hi)
    return round(end + margin_s, 1)
