"""The shape of a deployment as a networkx graph: hosts, GPUs, workers and worlds.

Nodes are ``(kind, name)`` tuples so a worker and a world may share a name. A world's
members are ordered: a member's rank is its position. The blast radius of failing
workers (the worlds that lose a member) is read from the graph; the membership timeline
asks it for every event that breaks worlds.

A ``Topology`` is mutable because membership changes while a deployment serves (joins,
new and removed worlds, dead workers); ``copy()`` gives an independent snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

import networkx as nx

HOST, GPU, WORKER, WORLD = "host", "gpu", "worker", "world"

LEADER = "leader"


class Topology:
    """Hosts with GPUs, workers placed on them, and worlds of ordered workers."""

    def __init__(self) -> None:
        self.graph: nx.Graph = nx.Graph()
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
        # each edge once with its own data (networkx's copy() adds every edge both ways)
        twin.graph.add_nodes_from((n, dict(d)) for n, d in self.graph.nodes(data=True))
        twin.graph.add_edges_from((u, v, dict(d)) for u, v, d in self.graph.edges(data=True))
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
        gpu = self.graph.nodes[(WORKER, worker)]["gpu"]
        return None if gpu is None else int(gpu)

    def members(self, world: str) -> tuple[str, ...]:
        """Members in rank order."""
        return tuple(self.graph.nodes[(WORLD, world)]["members"])

    def rank(self, world: str, worker: str) -> int:
        return int(self.graph.edges[(WORLD, world), (WORKER, worker)]["rank"])

    def workers_on(self, host: str) -> list[str]:
        return sorted(n for (k, n) in self.graph.neighbors((HOST, host)) if k == WORKER)

    def worlds_of(self, worker: str) -> list[str]:
        return sorted(n for (k, n) in self.graph.neighbors((WORKER, worker)) if k == WORLD)

    def blast_radius(self, workers: Iterable[str]) -> list[str]:
        """The worlds that lose a member when ``workers`` fail: every world of any of them."""
        return sorted({world for worker in workers for world in self.worlds_of(worker)})

    def host_graph(self, hosts: Iterable[str] | None = None) -> nx.Graph:
        """Hosts linked by the worlds they share (``weight``: how many worlds span both)."""
        graph = nx.Graph()
        graph.add_nodes_from(self.hosts() if hosts is None else hosts)
        for world in self.worlds():
            on = sorted({self.host_of(m) for m in self.members(world)} & set(graph))
            for i, a in enumerate(on):
                for b in on[i + 1 :]:
                    weight = graph.get_edge_data(a, b, {"weight": 0})["weight"]
                    graph.add_edge(a, b, weight=weight + 1)
        return graph

    def bridge_workers(self) -> list[str]:
        """Workers whose loss splits the worker-world graph: articulation points."""
        graph = nx.Graph()
        for world in self.worlds():
            graph.add_edges_from(((WORLD, world), (WORKER, m)) for m in self.members(world))
        return sorted(name for kind, name in nx.articulation_points(graph) if kind == WORKER)

    def cut(
        self, sides: Sequence[Sequence[str]], one_way: bool = False
    ) -> dict[str, dict[str, list[str]]]:
        """The worlds a cut between sets of hosts separates: for each, every member that
        has members across the cut, with those members (one way: between ``sides[0]``
        and ``sides[1]``, both ends cut off). Members on hosts no side names keep their
        links."""
        side_of = {host: i for i, side in enumerate(sides) for host in side}
        out: dict[str, dict[str, list[str]]] = {}
        for world in self.worlds():
            placed = {m: side_of.get(self.host_of(m)) for m in self.members(world)}
            across = {
                m: [o for o, so in placed.items() if so is not None and so != s]
                for m, s in placed.items()
                if s is not None
            }
            across = {m: others for m, others in across.items() if others}
            if across:
                out[world] = across
        return out


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


def pipeline_stages(replicas: Sequence[int]) -> list[list[str]]:
    """The replicas' names, stage by stage: ``s<i>r<j>``."""
    return [[f"s{i}r{j}" for j in range(n)] for i, n in enumerate(replicas)]


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
    stages = pipeline_stages(replicas)
    _place(topology, [LEADER, *(w for stage in stages for w in stage)], hosts)
    hops = [[LEADER], *stages, [LEADER]]
    for senders, receivers in pairwise(hops):
        for sender in senders:
            for receiver in receivers:
                topology.add_world(pipeline_world(sender, receiver), [receiver, sender])
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
