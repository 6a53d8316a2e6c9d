"""Hypothesis strategies for mwsim's inputs: topologies, faults, scenarios.

Shipped with the library (as Trio ships its testing helpers) so users can fuzz their own
runtimes and shapes. Everything drawn is valid by construction.
"""

from __future__ import annotations

from hypothesis import strategies as st

from mwsim import topology as topo


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
