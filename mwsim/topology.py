"""The shape of a deployment as a networkx graph: hosts, GPUs, workers and worlds.

Nodes are ``(kind, name)`` tuples so a worker and a world may share a name. A world's
members are ordered: a member's rank is its position. Faults are answered from the
graph: the blast radius of a fault is the set of worlds it breaks.

A ``Topology`` is mutable because membership changes while a deployment serves (joins,
new and removed worlds, dead workers); ``copy()`` gives an independent snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from math import prod

import networkx as nx

HOST, GPU, WORKER, WORLD = "host", "gpu", "worker", "world"

#: Fault kinds that target a worker, and what each does to the worker's worlds.
WORKER_FAULTS = ("crash", "hang", "leave", "slow")
#: Faults that break every world of their target (``slow`` degrades but breaks nothing).
BREAKING_FAULTS = ("crash", "hang", "leave", "crash_host")
FAULT_KINDS = (*WORKER_FAULTS, "crash_host")

LEADER = "leader"


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` is crash | hang | leave | slow (a worker) or crash_host (a host)."""

    kind: str
    target: str

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (expected one of {FAULT_KINDS})")


class Topology:
    """Hosts with GPUs, workers placed on them, and worlds of ordered workers."""

    def __init__(self) -> None:
        self.graph: nx.Graph = nx.Graph()
        #: Pipeline stages (worker names per stage) when built by ``pipeline()``.
        self.stages: list[list[str]] | None = None
        # names per node kind, in insertion order (so queries need not scan the graph)
        self._names_of: dict[str, dict[str, None]] = {HOST: {}, WORKER: {}, WORLD: {}}

    # -- building -----------------------------------------------------------------------

    def add_host(self, name: str, gpus: int = 0) -> None:
        if (HOST, name) in self.graph:
            raise ValueError(f"host {name!r} already exists")
        if gpus < 0:
            raise ValueError(f"host {name!r}: gpus must be >= 0")
        self.graph.add_node((HOST, name), gpus=gpus)
        self._names_of[HOST][name] = None
        for index in range(gpus):
            self.graph.add_edge((HOST, name), (GPU, f"{name}/{index}"))

    def add_worker(self, name: str, host: str, gpu: int | None = None) -> None:
        if (WORKER, name) in self.graph:
            raise ValueError(f"worker {name!r} already exists")
        if (HOST, host) not in self.graph:
            raise ValueError(f"worker {name!r}: no host named {host!r}")
        if gpu is not None and not 0 <= gpu < self.gpus_of(host):
            raise ValueError(f"worker {name!r}: host {host!r} has no GPU {gpu}")
        self.graph.add_node((WORKER, name), host=host, gpu=gpu)
        self._names_of[WORKER][name] = None
        self.graph.add_edge((WORKER, name), (HOST, host))
        if gpu is not None:
            self.graph.add_edge((WORKER, name), (GPU, f"{host}/{gpu}"))

    def add_world(self, name: str, members: Sequence[str]) -> None:
        if (WORLD, name) in self.graph:
            raise ValueError(f"world {name!r} already exists")
        if len(members) < 2:
            raise ValueError(f"world {name!r} needs at least 2 members")
        if len(set(members)) != len(members):
            raise ValueError(f"world {name!r} lists a member twice")
        for member in members:
            if (WORKER, member) not in self.graph:
                raise ValueError(f"world {name!r}: no worker named {member!r}")
        self.graph.add_node((WORLD, name), members=tuple(members))
        self._names_of[WORLD][name] = None
        for rank, member in enumerate(members):
            self.graph.add_edge((WORLD, name), (WORKER, member), rank=rank)

    def remove_world(self, name: str) -> None:
        self.graph.remove_node((WORLD, name))
        del self._names_of[WORLD][name]

    def remove_worker(self, name: str) -> set[str]:
        """Remove a dead worker and every world it was in; return those worlds."""
        worlds = set(self.worlds_of(name))
        for world in worlds:
            self.remove_world(world)
        self.graph.remove_node((WORKER, name))
        del self._names_of[WORKER][name]
        return worlds

    def copy(self) -> Topology:
        twin = Topology()
        twin.graph = self.graph.copy()
        twin.stages = [list(stage) for stage in self.stages] if self.stages else None
        twin._names_of = {kind: dict(names) for kind, names in self._names_of.items()}
        return twin

    # -- queries ------------------------------------------------------------------------

    def _names(self, kind: str) -> list[str]:
        return list(self._names_of[kind])

    def hosts(self) -> list[str]:
        return self._names(HOST)

    def first_host(self) -> str:
        return next(iter(self._names_of[HOST]))

    def workers(self) -> list[str]:
        return self._names(WORKER)

    def worlds(self) -> list[str]:
        return self._names(WORLD)

    def has_host(self, name: str) -> bool:
        return (HOST, name) in self.graph

    def has_worker(self, name: str) -> bool:
        return (WORKER, name) in self.graph

    def has_world(self, name: str) -> bool:
        return (WORLD, name) in self.graph

    def gpus_of(self, host: str) -> int:
        return int(self.graph.nodes[(HOST, host)]["gpus"])

    def host_of(self, worker: str) -> str:
        return str(self.graph.nodes[(WORKER, worker)]["host"])

    def gpu_of(self, worker: str) -> int | None:
        return self.graph.nodes[(WORKER, worker)]["gpu"]

    def members(self, world: str) -> tuple[str, ...]:
        """Members in rank order."""
        return self.graph.nodes[(WORLD, world)]["members"]

    def rank(self, world: str, worker: str) -> int:
        return int(self.graph.edges[(WORLD, world), (WORKER, worker)]["rank"])

    def workers_on(self, host: str) -> list[str]:
        return sorted(n for (k, n) in self.graph.neighbors((HOST, host)) if k == WORKER)

    def worlds_of(self, worker: str) -> list[str]:
        return sorted(n for (k, n) in self.graph.neighbors((WORKER, worker)) if k == WORLD)

    def fault_workers(self, fault: Fault) -> list[str]:
        """The workers a fault acts on."""
        if fault.kind == "crash_host":
            if not self.has_host(fault.target):
                raise KeyError(f"no host named {fault.target!r}")
            return self.workers_on(fault.target)
        if not self.has_worker(fault.target):
            raise KeyError(f"no worker named {fault.target!r}")
        return [fault.target]

    def blast_radius(self, fault: Fault) -> set[str]:
        """The worlds a fault breaks: every world with a member the fault acts on."""
        if fault.kind not in BREAKING_FAULTS:
            self.fault_workers(fault)  # still reject unknown targets
            return set()
        return {world for worker in self.fault_workers(fault) for world in self.worlds_of(worker)}

    def healthy_worlds(self, faults: Iterable[Fault] = ()) -> set[str]:
        """Worlds untouched by every fault in ``faults``."""
        broken: set[str] = set()
        for fault in faults:
            broken |= self.blast_radius(fault)
        return set(self.worlds()) - broken

    def faulty_workers(self, faults: Iterable[Fault]) -> set[str]:
        return {
            worker
            for fault in faults
            if fault.kind in BREAKING_FAULTS
            for worker in self.fault_workers(fault)
        }

    def serving_paths(self, faults: Iterable[Fault] = ()) -> int:
        """Complete leader -> stage 0 -> ... -> last stage -> leader paths left (pipelines only)."""
        if self.stages is None:
            raise ValueError("serving paths are defined for pipeline topologies only")
        faults = list(faults)
        healthy = self.healthy_worlds(faults)
        dead = self.faulty_workers(faults)
        if LEADER in dead:
            return 0

        def usable(sender: str, receiver: str) -> bool:
            return pipeline_world(sender, receiver) in healthy

        # paths[w]: number of ways to reach worker w of the current stage from the leader.
        paths = {w: int(usable(LEADER, w)) for w in self.stages[0] if w not in dead}
        for stage in self.stages[1:]:
            paths = {
                w: sum(n for u, n in paths.items() if usable(u, w)) for w in stage if w not in dead
            }
        return sum(n for w, n in paths.items() if usable(w, LEADER))

    def has_serving_path(self, faults: Iterable[Fault] = ()) -> bool:
        return self.serving_paths(faults) > 0


# -- generators ---------------------------------------------------------------------------


def _place(topology: Topology, workers: Sequence[str], hosts: int) -> None:
    """Deal workers round-robin over hosts h0..h(K-1), one GPU each on their host."""
    if hosts < 1:
        raise ValueError("hosts must be >= 1")
    placement = [f"h{i % hosts}" for i in range(len(workers))]
    for index in range(hosts):
        topology.add_host(f"h{index}", gpus=placement.count(f"h{index}"))
    next_gpu = dict.fromkeys(topology.hosts(), 0)
    for worker, host in zip(workers, placement, strict=True):
        topology.add_worker(worker, host, gpu=next_gpu[host])
        next_gpu[host] += 1


def fan_in(workers: int, hosts: int = 1) -> Topology:
    """A ``leader`` and ``w1..wN``; ``world<i> = [leader, w<i>]`` (leader is rank 0)."""
    if workers < 1:
        raise ValueError("fan_in needs at least one worker")
    topology = Topology()
    names = [f"w{i}" for i in range(1, workers + 1)]
    _place(topology, [LEADER, *names], hosts)
    for i, name in enumerate(names, start=1):
        topology.add_world(f"world{i}", [LEADER, name])
    return topology


def pipeline_world(sender: str, receiver: str) -> str:
    """Name of the pipeline world that carries data from ``sender`` to ``receiver``."""
    return f"{sender}-{receiver}"


def pipeline(replicas: Sequence[int], hosts: int = 1) -> Topology:
    """Stages ``s<i>`` with ``replicas[i]`` replicas ``s<i>r<j>``.

    One world per connected pair across consecutive stages (as MultiWorld does at
    partition boundaries); the leader feeds every replica of the first stage and collects
    from every replica of the last. In each world the receiving side is rank 0, so a
    ``stream`` workload flows along the pipeline.
    """
    if not replicas or any(r < 1 for r in replicas):
        raise ValueError("a pipeline needs at least one stage, each with at least one replica")
    topology = Topology()
    stages = [[f"s{i}r{j}" for j in range(n)] for i, n in enumerate(replicas)]
    _place(topology, [LEADER, *(w for stage in stages for w in stage)], hosts)
    hops = [[LEADER], *stages, [LEADER]]
    for senders, receivers in pairwise(hops):
        for sender in senders:
            for receiver in receivers:
                topology.add_world(pipeline_world(sender, receiver), [receiver, sender])
    topology.stages = stages
    return topology


def explicit(
    hosts: Mapping[str, int],
    workers: Mapping[str, tuple[str, int | None]],
    worlds: Mapping[str, Sequence[str]],
) -> Topology:
    """Hosts ``{name: gpus}``, workers ``{name: (host, gpu)}``, worlds ``{name: members}``."""
    topology = Topology()
    for name, gpus in hosts.items():
        topology.add_host(name, gpus)
    for name, (host, gpu) in workers.items():
        topology.add_worker(name, host, gpu)
    for name, members in worlds.items():
        topology.add_world(name, members)
    return topology


def total_paths(replicas: Sequence[int]) -> int:
    """Serving paths of an intact pipeline: the product of the stages' replica counts."""
    return prod(replicas)
