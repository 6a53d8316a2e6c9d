"""Stochastic scenario generators: simpy processes that write valid scenario files.

Each family is a set of simpy processes (failure clocks, load curves, preemption waves)
that propose events as simulated time advances. Every proposal goes through the same
membership ``Membership`` the validator uses, and only possible events are kept, so every
generated scenario validates by construction. Randomness comes from the one registered
RNG, seeded from the seed: the same family and seed always give the same file.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import simpy

from mwsim.events import Kind, parse_event
from mwsim.internal.rng import seeded
from mwsim.membership import Membership
from mwsim.scenario import Scenario

QUIET_TAIL_S = 10.0
Process = Generator[simpy.Event, Any, None]


@dataclass
class Params:
    """Knobs shared by the families; each family documents the ones it reads."""

    workers: int = 6
    hosts: int = 2
    duration_s: float = 30.0
    mtbf_s: float = 60.0  # mean time between failures of one worker
    host_mtbf_s: float = 90.0
    workload: str = "stream"
    interval_ms: float = 20.0
    extra: dict[str, Any] = field(default_factory=dict)


class _Gen:
    """One generation run: a simpy clock, the RNG, and the timeline that vets events."""

    def __init__(self, family: str, seed: int, params: Params, topology: dict[str, Any]) -> None:
        self.family, self.seed, self.params = family, seed, params
        self.rng: random.Random = seeded(f"{family}:{seed}")
        self.env = simpy.Environment()
        self.base: dict[str, Any] = {
            "mwsim": 1,
            "name": f"{family}-{seed}",
            "description": f"generated: family {family}, seed {seed}",
            "seed": seed,
            "topology": topology,
            "workload": {"kind": params.workload, "interval_ms": params.interval_ms},
            "duration_s": params.duration_s,
        }
        self.timeline: Membership = Scenario.model_validate(self.base).membership()
        self.events: list[dict[str, Any]] = []
        self.joined = 0  # joins so far, for fresh names

    @property
    def now(self) -> float:
        return round(float(self.env.now), 3)

    @property
    def quiet_from(self) -> float:
        """No event after this, so every bound (detection, join) can be judged in the run."""
        return self.params.duration_s - min(QUIET_TAIL_S, self.params.duration_s / 3)

    def propose(self, do: Kind, **fields: Any) -> bool:
        """Keep the event if it is possible at the current time."""
        if self.env.now > self.quiet_from:
            return False
        data = {"at": self.now, "do": do.value, **fields}
        if not self.timeline.try_apply(parse_event(data)):
            return False
        self.events.append(data)
        return True

    def running(self, exclude: tuple[str, ...] = ()) -> list[str]:
        return [w for w in self.timeline.running() if w not in exclude]

    def up_hosts(self, free: bool = False) -> list[str]:
        """Hosts not powered off (``free``: and not under a partition)."""
        tl = self.timeline
        return [h for h in tl.topology.hosts() if h not in tl.off and not (free and h in tl.cuts)]

    def fresh_worker(self) -> str:
        self.joined += 1
        return f"j{self.joined}"

    def scenario_data(self) -> dict[str, Any]:
        return {**self.base, "events": self.events}


# -- building blocks (simpy processes) ---------------------------------------------------


def _failures(g: _Gen, worker: str, mtbf: float, kinds: dict[Kind, float]) -> Process:
    """A worker's failure clock: exponential gaps; crash and leave end it, hang pauses it."""
    names, weights = zip(*kinds.items(), strict=True)
    while True:
        yield g.env.timeout(g.rng.expovariate(1.0 / mtbf))
        if g.env.now > g.params.duration_s:
            return
        kind = Kind(g.rng.choices(names, weights)[0])
        if kind is Kind.HANG:
            for_s = round(g.rng.uniform(1.0, 9.0), 3)
            if g.propose(kind, target=worker, for_s=for_s):
                yield g.env.timeout(for_s)
        elif kind is Kind.SLOW:
            for_s, delay = round(g.rng.uniform(1.0, 5.0), 3), round(g.rng.uniform(20, 200), 1)
            if g.propose(kind, target=worker, delay_ms=delay, for_s=for_s):
                yield g.env.timeout(for_s)
        elif g.propose(kind, target=worker):
            return


def _host_failures(
    g: _Gen, host: str, mtbf: float, hosts: list[str], correlation: float
) -> Process:
    """A host's failure clock; with probability ``correlation`` a neighbour follows within 2 s."""
    yield g.env.timeout(g.rng.expovariate(1.0 / mtbf))
    if not g.propose(Kind.CRASH_HOST, target=host):
        return
    if g.rng.random() < correlation:
        neighbour = hosts[(hosts.index(host) + 1) % len(hosts)]
        yield g.env.timeout(g.rng.uniform(0.05, 2.0))
        g.propose(Kind.CRASH_HOST, target=neighbour)


def _join_one(g: _Gen, name: str | None = None, host: str | None = None) -> str | None:
    """A new worker joining with its own world to the leader."""
    worker = name or g.fresh_worker()
    world = f"world_{worker}"
    fields: dict[str, Any] = {"worker": worker, "worlds": {world: ["leader", worker]}}
    if host is not None:
        fields["host"] = host
    return worker if g.propose(Kind.JOIN, **fields) else None


# -- families ----------------------------------------------------------------------------


def _fan_in(p: Params) -> dict[str, Any]:
    return {"generator": "fan_in", "workers": p.workers, "hosts": p.hosts}


def mtbf(g: _Gen) -> None:
    """Independent worker failures: every worker fails after an exponential time (``mtbf_s``),
    as a crash (60 %), hang (20 %) or leave (20 %); a hung worker may fail again later."""
    kinds = g.params.extra.get("kinds", {Kind.CRASH: 0.6, Kind.HANG: 0.2, Kind.LEAVE: 0.2})
    for worker in g.timeline.topology.workers():
        g.env.process(_failures(g, worker, g.params.mtbf_s, kinds))


def hosts(g: _Gen) -> None:
    """Correlated host failures: each host crashes after an exponential time (``host_mtbf_s``);
    a crash takes its rack neighbour with it within 2 s with probability 0.5."""
    names = g.timeline.topology.hosts()
    for host in names:
        g.env.process(_host_failures(g, host, g.params.host_mtbf_s, names, 0.5))


def _load(g: _Gen, level: list[float]) -> Process:
    """A bursty request rate: quiet periods, then bursts of 2-6x, exponential dwell times."""
    while True:
        level[0] = 1.0 if level[0] > 1.0 else g.rng.uniform(2.0, 6.0)
        yield g.env.timeout(g.rng.expovariate(1.0 / (4.0 if level[0] > 1.0 else 6.0)))


def _scaler(g: _Gen, level: list[float], per_worker: float, cooldown: float) -> Process:
    """Keep enough workers for the load: join when it rises, leave when it falls."""
    added: list[str] = []
    while True:
        yield g.env.timeout(cooldown)
        running = set(g.running())
        base = len(running - {"leader"} - set(added))
        target = max(0, math.ceil(level[0] * g.params.workers / per_worker) - base)
        live = [w for w in added if w in running]
        if len(live) < target:
            worker = _join_one(g)
            if worker:
                added.append(worker)
        elif len(live) > target and live:
            g.propose(Kind.LEAVE, target=live[-1])


def autoscale(g: _Gen) -> None:
    """Autoscaling driven by a bursty request rate: joins when load rises, leaves when it falls."""
    level = [1.0]
    g.env.process(_load(g, level))
    g.env.process(_scaler(g, level, per_worker=2.0, cooldown=1.5))
    if g.params.extra.get("failures"):  # the leader (the router) is kept reliable
        for worker in g.timeline.topology.workers():
            if worker != "leader":
                g.env.process(_failures(g, worker, g.params.mtbf_s, {Kind.CRASH: 1.0}))


def _waves(g: _Gen, mean_gap: float, fraction: float, spread: float, downtime: float) -> Process:
    """Preemption waves: many leaves within ``spread`` seconds, rejoins after ``downtime``."""
    while True:
        yield g.env.timeout(g.rng.expovariate(1.0 / mean_gap))
        victims = [w for w in g.running(exclude=("leader",))]
        g.rng.shuffle(victims)
        victims = victims[: max(1, round(len(victims) * fraction))]
        gone = []
        for worker in victims:
            yield g.env.timeout(g.rng.uniform(0.0, spread / max(1, len(victims))))
            host = (
                g.timeline.topology.host_of(worker)
                if g.timeline.topology.has_worker(worker)
                else None
            )
            if g.propose(Kind.LEAVE, target=worker):
                gone.append((worker, host))
        yield g.env.timeout(downtime)
        for worker, host in gone:
            _join_one(g, name=worker, host=host)
            yield g.env.timeout(g.rng.uniform(0.0, 0.5))


def spot(g: _Gen) -> None:
    """Spot preemption: waves take most workers within seconds; they rejoin under the same
    names (and world names) after a short downtime."""
    g.env.process(_waves(g, mean_gap=8.0, fraction=0.6, spread=2.0, downtime=3.0))


def _poisson(g: _Gen, rate: float, act: Callable[[], None]) -> Process:
    while True:
        yield g.env.timeout(g.rng.expovariate(rate))
        act()


def _swarm_action(g: _Gen, kind: Kind, added: list[int]) -> Callable[[], None]:
    """What one enabled kind does each time its Poisson clock fires."""

    def pick(exclude: tuple[str, ...] = ()) -> str | None:
        live = g.running(exclude)
        return g.rng.choice(live) if live else None

    def run() -> None:
        if kind in (Kind.CRASH, Kind.LEAVE):
            target = pick(("leader",)) if g.rng.random() < 0.9 else pick()
            if target:
                g.propose(kind, target=target)
        elif kind is Kind.HANG:
            target = pick()
            if target:
                g.propose(kind, target=target, for_s=round(g.rng.uniform(0.5, 8.0), 3))
        elif kind is Kind.SLOW:
            target = pick()
            if target:
                delay = round(g.rng.uniform(10, 250), 1)
                for_s = round(g.rng.uniform(0.5, 5.0), 3)
                g.propose(kind, target=target, delay_ms=delay, for_s=for_s)
        elif kind is Kind.CRASH_HOST:
            g.propose(kind, target=g.rng.choice(g.timeline.topology.hosts()))
        elif kind is Kind.JOIN:
            _join_one(g, host=g.rng.choice(g.timeline.topology.hosts()))
        elif kind is Kind.ADD_WORLD:
            live = g.running()
            if len(live) >= 2:
                added[0] += 1
                members = g.rng.sample(live, 2)
                g.propose(kind, world=f"x{added[0]}", members=members)
        elif kind is Kind.REMOVE_WORLD:
            extra = [w for w in g.timeline.topology.worlds() if w.startswith("x")]
            if extra:
                g.propose(kind, world=g.rng.choice(extra))
        elif kind is Kind.PARTITION:
            sides = _random_split(g)
            if sides:
                g.propose(kind, groups=sides, for_s=round(g.rng.uniform(0.5, 6.0), 3))
        elif kind is Kind.DEGRADE:
            host = g.rng.choice(g.up_hosts())
            delay = round(g.rng.choice([10.0, 50.0, 100.0]), 1)
            g.propose(kind, target=host, delay_ms=delay, for_s=round(g.rng.uniform(1.0, 5.0), 3))
        elif kind is Kind.POWER_OFF:
            hosts = [h for h in g.up_hosts() if h != "h0" and g.timeline.topology.workers_on(h)]
            if hosts:
                g.propose(kind, target=g.rng.choice(hosts))

    return run


def swarm(g: _Gen) -> None:
    """Swarm testing: each seed enables a random subset of event kinds, each at its own rate."""
    kinds = [k for k in Kind if not k.info.gpu]  # generated scenarios run on gloo
    enabled = [k for k in kinds if g.rng.random() < 0.5] or [g.rng.choice(kinds)]
    added = [0]
    for kind in enabled:
        rate = g.rng.uniform(0.05, 0.5)
        g.env.process(_poisson(g, rate, _swarm_action(g, kind, added)))


def _random_split(g: _Gen) -> list[list[str]] | None:
    """Two non-empty sides from the free hosts, uniformly at random."""
    free = g.up_hosts(free=True)
    if len(free) < 2:
        return None
    g.rng.shuffle(free)
    cut = g.rng.randint(1, len(free) - 1)
    return [sorted(free[:cut]), sorted(free[cut:])]


def _targeted_split(g: _Gen) -> list[list[str]] | None:
    """A cut picked from the topology graph, as Jepsen's targeted nemeses are: the one
    separating the most worlds (max cut of the host graph), a bridge worker's host from
    the rest (an articulation point of the worker-world graph), or the minority of one
    world's members from its majority."""
    topology, free = g.timeline.topology, g.up_hosts(free=True)
    if len(free) < 2:
        return None
    how = g.rng.choice(["most-worlds", "bridge", "minority"])
    if how == "most-worlds":
        graph = topology.host_graph(free)
        if graph.number_of_edges():
            _, (a, b) = nx.algorithms.approximation.maxcut.one_exchange(
                graph, weight="weight", seed=g.rng
            )
            return [sorted(a), sorted(b)]
    elif how == "bridge":
        hosts = sorted({topology.host_of(w) for w in topology.bridge_workers()} & set(free))
        if hosts:
            host = g.rng.choice(hosts)
            return [[host], sorted(set(free) - {host})]
    else:
        worlds = [
            w
            for w in topology.worlds()
            if len({topology.host_of(m) for m in topology.members(w)}) > 1
        ]
        if worlds:
            members = topology.members(g.rng.choice(worlds))
            counts: dict[str, int] = {}
            for member in members:
                counts[topology.host_of(member)] = counts.get(topology.host_of(member), 0) + 1
            majority = max(sorted(counts), key=lambda h: counts[h])
            minority = sorted(set(counts) - {majority})
            if majority in free and set(minority) <= set(free):
                return [minority, sorted(set(free) - set(minority))]
    return _random_split(g)


def _cuts(g: _Gen, rate: float) -> Process:
    """Partitions at Poisson times, half of them targeted; mostly silent, some resetting;
    each heals after an exponential time (mean 3 s), or never (one in ten)."""
    while True:
        yield g.env.timeout(g.rng.expovariate(rate))
        sides = _targeted_split(g) if g.rng.random() < 0.5 else _random_split(g)
        if not sides:
            continue
        fields: dict[str, Any] = {"groups": sides}
        if g.rng.random() < 0.3:
            fields = {"from": sides[0], "to": sides[1]}
        fields["mode"] = "reset" if g.rng.random() < 0.2 else "drop"
        if g.rng.random() < 0.9:
            fields["for_s"] = round(min(g.rng.expovariate(1 / 3.0) + 0.2, 15.0), 3)
        g.propose(Kind.PARTITION, **fields)


def _flapping(g: _Gen, mean_gap: float) -> Process:
    """A link that flaps: one host loses its way to the leader's host, one way, several
    times for under a second each."""
    while True:
        yield g.env.timeout(g.rng.expovariate(1.0 / mean_gap))
        hosts = [h for h in g.up_hosts(free=True) if h != "h0"]
        if not hosts or "h0" not in g.up_hosts(free=True):
            continue
        host = g.rng.choice(hosts)
        for _ in range(g.rng.randint(3, 5)):
            for_s = round(g.rng.uniform(0.2, 0.9), 3)
            g.propose(Kind.PARTITION, **{"from": [host], "to": ["h0"], "for_s": for_s})
            yield g.env.timeout(for_s + g.rng.uniform(0.3, 1.5))


def _rack_power(g: _Gen, mtbf: float) -> Process:
    """Rack-correlated power loss: a host goes dark, and half the time its rack
    neighbour (the next host) within 2 s; the leader's host is spared."""
    yield g.env.timeout(g.rng.expovariate(1.0 / mtbf))
    hosts = [h for h in g.up_hosts() if h != "h0" and g.timeline.topology.workers_on(h)]
    if not hosts:
        return
    host = g.rng.choice(hosts)
    if not g.propose(Kind.POWER_OFF, target=host) or g.rng.random() < 0.5:
        return
    every = g.timeline.topology.hosts()
    neighbour = every[(every.index(host) + 1) % len(every)]
    yield g.env.timeout(g.rng.uniform(0.05, 2.0))
    if neighbour != "h0":
        g.propose(Kind.POWER_OFF, target=neighbour)


def partitions(g: _Gen) -> None:
    """Network failures: random and targeted partitions (``rate``), a flapping link, rack
    power loss (``host_mtbf_s``), and degraded links."""
    g.env.process(_cuts(g, rate=g.params.extra.get("rate", 0.25)))
    g.env.process(_flapping(g, mean_gap=g.params.extra.get("flap_gap_s", 12.0)))
    g.env.process(_rack_power(g, g.params.host_mtbf_s))
    g.env.process(_poisson(g, 0.1, _swarm_action(g, Kind.DEGRADE, [0])))


FAMILIES: dict[str, tuple[Callable[[_Gen], None], Params]] = {
    "mtbf": (mtbf, Params()),
    "hosts": (hosts, Params(workers=8, hosts=4)),
    "autoscale": (autoscale, Params(workers=2, hosts=1, workload="request")),
    "spot": (spot, Params(workers=6, hosts=2)),
    "swarm": (swarm, Params(workers=5, hosts=2)),
    "partitions": (partitions, Params(workers=6, hosts=4, host_mtbf_s=60.0)),
}


def generate(family: str, seed: int, **overrides: Any) -> dict[str, Any]:
    """Scenario data (a dict ready to dump as YAML) from ``family`` with ``seed``.

    ``overrides`` replace the family's default ``Params`` (``workers``, ``duration_s``,
    ``mtbf_s`` ...); unknown keys go to ``Params.extra``.
    """
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r} (families: {', '.join(FAMILIES)})")
    build, defaults = FAMILIES[family]
    known = {k: v for k, v in overrides.items() if k in Params.__dataclass_fields__}
    extra = {k: v for k, v in overrides.items() if k not in Params.__dataclass_fields__}
    params = Params(**{**defaults.__dict__, **known, "extra": {**defaults.extra, **extra}})
    g = _Gen(family, seed, params, _fan_in(params))
    build(g)
    g.env.run(until=params.duration_s)
    return g.scenario_data()
