"""The membership timeline of a scenario: which workers and worlds exist, and when.

``plan(scenario)`` walks the events in time order over an evolving ``Topology`` and
records the life of every worker and every world incarnation (a world name may be used
again once its earlier world is gone). ``plan_problems(scenario)`` lists what makes a
timeline impossible (targets that are gone, names still in use, worlds of one member,
...), each with the data path it is about, so the loader can point at a line.

The simulator, the replay controller and the checkers all read the same ``Plan``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mwsim.scenario import (
    AddWorld,
    Crash,
    CrashHost,
    ExplicitSpec,
    Hang,
    Join,
    Leave,
    PipelineSpec,
    RemoveWorld,
    Scenario,
    Slow,
)
from mwsim.topology import Topology

Loc = tuple[Any, ...]
ENDING_FAULTS = ("crash", "leave", "crash_host")


def _s(t: float) -> str:
    return f"{t:g} s"


@dataclass
class Span:
    """A hang or slow of one member during a world's life; ``end`` None = to the run's end."""

    kind: str
    worker: str
    start: float
    end: float | None
    event: int

    def covers(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass
class WorldLife:
    """One incarnation of a world, from its formation to its end (if it ends)."""

    name: str
    members: tuple[str, ...]
    start: float
    origin: str  # initial | join | add_world
    origin_event: int | None = None
    end: float | None = None
    end_cause: str | None = None  # crash | leave | crash_host | remove_world
    end_event: int | None = None
    end_worker: str | None = None
    spans: list[Span] = field(default_factory=list)

    def alive_at(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    @property
    def broken_by_fault(self) -> bool:
        return self.end_cause in ENDING_FAULTS

    def hangs(self) -> list[Span]:
        return [span for span in self.spans if span.kind == "hang"]


@dataclass
class WorkerLife:
    """One worker process: from start (0 for the initial ones, or its join) to its end."""

    name: str
    host: str
    gpu: int | None
    start: float
    origin: str  # initial | join
    origin_event: int | None = None
    end: float | None = None
    end_cause: str | None = None  # crash | leave | crash_host
    end_event: int | None = None


@dataclass
class Step:
    """A scenario event as resolved at its time: the processes it acts on, the worlds it hits."""

    index: int
    event: Any
    workers: tuple[str, ...] = ()
    worlds: tuple[str, ...] = ()


@dataclass
class Plan:
    """Every worker and world life of a scenario, and its resolved steps in time order."""

    initial: Topology
    workers: list[WorkerLife]
    worlds: list[WorldLife]
    steps: list[Step]
    duration: float
    _by_name: dict[str, list[WorldLife]] = field(default_factory=dict, repr=False)
    _index: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for i, life in enumerate(self.worlds):
            self._by_name.setdefault(life.name, []).append(life)
            self._index[id(life)] = i

    def index(self, life: WorldLife) -> int:
        """Position of a world life in ``worlds`` (its identity in checks and reports)."""
        return self._index[id(life)]

    def lives_of(self, world: str) -> list[WorldLife]:
        return self._by_name.get(world, [])

    def life_at(self, world: str, t: float) -> WorldLife | None:
        for life in self.lives_of(world):
            if life.alive_at(t):
                return life
        return None

    def worker(self, name: str, t: float | None = None) -> WorkerLife:
        lives = [w for w in self.workers if w.name == name]
        if t is not None:
            lives = [w for w in lives if w.start <= t] or lives
        return lives[-1]


class PlanError(ValueError):
    """The timeline is impossible; ``problems`` lists ``(loc, message)`` pairs."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


def _explicit_problems(spec: ExplicitSpec, backend: str) -> list[tuple[Loc, str]]:
    base: Loc = ("topology",)
    problems: list[tuple[Loc, str]] = []
    if not spec.hosts:
        problems.append(((*base, "hosts"), "needs at least one host"))
    for name, worker in spec.workers.items():
        loc = (*base, "workers", name)
        host = spec.hosts.get(worker.host)
        if host is None:
            known = ", ".join(spec.hosts) or "none"
            problems.append(
                ((*loc, "host"), f"worker '{name}': no host named '{worker.host}' (hosts: {known})")
            )
            continue
        if worker.gpu is not None and worker.gpu >= host.gpus:
            problems.append(
                (
                    (*loc, "gpu"),
                    f"worker '{name}': host '{worker.host}' has {host.gpus} GPU(s), "
                    f"no GPU {worker.gpu}",
                )
            )
        if backend == "nccl" and host.gpus == 0:
            problems.append(
                (
                    (*loc, "host"),
                    f"worker '{name}': backend nccl needs a GPU per worker, "
                    f"but host '{worker.host}' has gpus: 0",
                )
            )
    for name, members in spec.worlds.items():
        loc = (*base, "worlds", name)
        problems += _members_problems(name, members, loc, lambda m: m in spec.workers)
    return problems


def _members_problems(world: str, members: Sequence[str], loc: Loc, exists) -> list:
    problems: list[tuple[Loc, str]] = []
    if len(members) < 2:
        problems.append((loc, f"world '{world}' needs at least 2 members, has {len(members)}"))
    seen: set[str] = set()
    for k, member in enumerate(members):
        if member in seen:
            problems.append(((*loc, k), f"world '{world}' lists '{member}' twice"))
        seen.add(member)
        if not exists(member):
            problems.append(((*loc, k), f"world '{world}': no worker named '{member}'"))
    return problems


class Timeline:
    """The membership state of a scenario as its events are applied in time order.

    ``apply`` records what is wrong with an impossible event and leaves the state as it
    was; ``try_apply`` does the same silently and says whether the event was taken, so a
    generator can use the very rules the validator uses.
    """

    def __init__(self, scenario: Scenario, topology: Topology) -> None:
        self.scenario = scenario
        self.initial = topology.copy()
        self.topology = topology
        self.problems: list[tuple[Loc, str]] = []
        self.workers: dict[str, WorkerLife] = {}
        self.all_workers: list[WorkerLife] = []
        self.worlds: dict[str, WorldLife] = {}
        self.all_worlds: list[WorldLife] = []
        self.steps: list[Step] = []
        self.hung: dict[str, Span] = {}
        self.slow: dict[str, Span] = {}
        self.gone: dict[str, WorkerLife] = {}
        self.joins: dict[str, list[float]] = defaultdict(list)
        for _, event in scenario.ordered_events():
            if isinstance(event, Join):
                self.joins[event.worker].append(event.at)
        for name in topology.workers():
            self._start_worker(name, 0.0, "initial", None)
        for name in topology.worlds():
            self._start_world(name, topology.members(name), 0.0, "initial", None)

    # -- bookkeeping -------------------------------------------------------------------

    def _start_worker(self, name: str, t: float, origin: str, index: int | None) -> None:
        life = WorkerLife(
            name, self.topology.host_of(name), self.topology.gpu_of(name), t, origin, index
        )
        self.workers[name] = life
        self.all_workers.append(life)
        self.gone.pop(name, None)

    def _start_world(
        self, name: str, members: Sequence[str], t: float, origin: str, index: int | None
    ) -> None:
        life = WorldLife(name, tuple(members), t, origin, index)
        for worker in members:  # a member already slow slows the new world too
            span = self.slow.get(worker)
            if span is not None:
                life.spans.append(span)
        self.worlds[name] = life
        self.all_worlds.append(life)

    def _end_world(self, name: str, t: float, cause: str, index: int, worker: str | None) -> None:
        life = self.worlds.pop(name)
        life.end, life.end_cause, life.end_event, life.end_worker = t, cause, index, worker

    def _kill(self, worker: str, t: float, cause: str, index: int) -> list[str]:
        ended = self.topology.worlds_of(worker)
        for world in ended:
            self._end_world(world, t, cause, index, worker)
        self.topology.remove_worker(worker)
        life = self.workers.pop(worker)
        life.end, life.end_cause, life.end_event = t, cause, index
        self.gone[worker] = life
        for table in (self.hung, self.slow):
            span = table.pop(worker, None)
            if span is not None and (span.end is None or span.end > t):
                span.end = t
        return ended

    def _expire(self, t: float) -> None:
        for table in (self.hung, self.slow):
            for worker, span in list(table.items()):
                if span.end is not None and span.end <= t:
                    del table[worker]

    # -- target checks -----------------------------------------------------------------

    def _worker_problem(self, name: str, t: float) -> str | None:
        """Why ``name`` is not a running worker at ``t`` (None when it is)."""
        if self.topology.has_worker(name):
            return None
        if name in self.gone:
            life = self.gone[name]
            return (
                f"worker '{name}' is gone at {_s(t)}: it ended by {life.end_cause} "
                f"at {_s(life.end or 0)} (events[{life.end_event}])"
            )
        later = [at for at in self.joins.get(name, []) if at > t]
        if later:
            return f"worker '{name}' does not exist yet at {_s(t)} (it joins at {_s(later[0])})"
        if self.topology.has_host(name):
            return f"'{name}' is a host, not a worker (use do: crash_host to crash its workers)"
        known = self.topology.workers()
        shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        return f"no worker named '{name}' (running at {_s(t)}: {shown or 'none'})"

    def _running(self, name: str, t: float, loc: Loc, *, hung_ok: bool, why: str = "") -> bool:
        problem = self._worker_problem(name, t)
        if problem is None and not hung_ok and name in self.hung:
            span = self.hung[name]
            until = f"until {_s(span.end)}" if span.end is not None else "for good"
            problem = f"worker '{name}' is hung at {_s(t)} (since {_s(span.start)}, {until}){why}"
        if problem is not None:
            self.problems.append((loc, problem))
            return False
        return True

    def _free_world_name(self, name: str, t: float, loc: Loc) -> bool:
        if self.topology.has_world(name):
            since = self.worlds[name].start
            self.problems.append(
                (loc, f"world '{name}' already exists at {_s(t)} (formed at {_s(since)})")
            )
            return False
        return True

    def _members_ok(self, world: str, members: Sequence[str], t: float, loc: Loc, joiner=None):
        problems = _members_problems(world, members, loc, lambda m: True)
        ok = not problems
        self.problems += problems
        for k, member in enumerate(members):
            if member != joiner and not self._running(
                member, t, (*loc, k), hung_ok=False, why=" and cannot form a world"
            ):
                ok = False
        return ok

    # -- events ------------------------------------------------------------------------

    def try_apply(self, event: Any) -> bool:
        """Apply ``event`` (at or after every earlier one) if it is possible now."""
        before = len(self.problems)
        self.apply(len(self.steps) + before, event)
        if len(self.problems) > before:
            del self.problems[before:]
            return False
        return True

    def running(self) -> list[str]:
        """Workers alive and not hung now."""
        return [w for w in self.topology.workers() if w not in self.hung]

    def apply(self, index: int, event: Any) -> None:
        t = event.at
        here: Loc = ("events", index)
        self._expire(t)
        if t > self.scenario.duration_s:
            self.problems.append(
                (
                    (*here, "at"),
                    f"{_s(t)} is after the end of the run "
                    f"(duration_s: {self.scenario.duration_s:g})",
                )
            )
            return
        handler = {
            Crash: self._crash,
            Leave: self._crash,
            Hang: self._hang,
            Slow: self._slow,
            CrashHost: self._crash_host,
            Join: self._join,
            AddWorld: self._add_world,
            RemoveWorld: self._remove_world,
        }[type(event)]
        step = handler(index, event, t, here)
        if step is not None:
            self.steps.append(step)

    def _crash(self, index: int, event: Crash | Leave, t: float, here: Loc) -> Step | None:
        leaving = isinstance(event, Leave)
        why = " and cannot leave gracefully (crash it instead)" if leaving else ""
        if not self._running(event.target, t, (*here, "target"), hung_ok=not leaving, why=why):
            return None
        ended = self._kill(event.target, t, event.do, index)
        return Step(index, event, (event.target,), tuple(ended))

    def _hang(self, index: int, event: Hang, t: float, here: Loc) -> Step | None:
        if not self._running(event.target, t, (*here, "target"), hung_ok=False):
            return None
        end = t + event.for_s if event.for_s is not None else None
        span = Span("hang", event.target, t, end, index)
        self.hung[event.target] = span
        worlds = self.topology.worlds_of(event.target)
        for world in worlds:
            self.worlds[world].spans.append(span)
        return Step(index, event, (event.target,), tuple(worlds))

    def _slow(self, index: int, event: Slow, t: float, here: Loc) -> Step | None:
        if not self._running(event.target, t, (*here, "target"), hung_ok=True):
            return None
        if event.target in self.slow:
            span = self.slow[event.target]
            until = f"until {_s(span.end)}" if span.end is not None else "to the end"
            self.problems.append(
                ((*here, "target"), f"worker '{event.target}' is already slow at {_s(t)} ({until})")
            )
            return None
        end = t + event.for_s if event.for_s is not None else None
        span = Span("slow", event.target, t, end, index)
        self.slow[event.target] = span
        worlds = self.topology.worlds_of(event.target)
        for world in worlds:
            self.worlds[world].spans.append(span)
        return Step(index, event, (event.target,), tuple(worlds))

    def _crash_host(self, index: int, event: CrashHost, t: float, here: Loc) -> Step | None:
        loc = (*here, "target")
        if not self.topology.has_host(event.target):
            hint = ""
            if self.topology.has_worker(event.target) or event.target in self.gone:
                hint = f" ('{event.target}' is a worker: use do: crash)"
            hosts = ", ".join(self.topology.hosts())
            self.problems.append((loc, f"no host named '{event.target}' (hosts: {hosts}){hint}"))
            return None
        victims = self.topology.workers_on(event.target)
        if not victims:
            self.problems.append(
                (loc, f"host '{event.target}' has no running worker at {_s(t)}: nothing to crash")
            )
            return None
        ended: list[str] = []
        for worker in victims:
            ended += self._kill(worker, t, "crash_host", index)
        return Step(index, event, tuple(victims), tuple(ended))

    def _join(self, index: int, event: Join, t: float, here: Loc) -> Step | None:
        ok = True
        if self.topology.has_worker(event.worker):
            self.problems.append(
                (
                    (*here, "worker"),
                    f"worker '{event.worker}' is already running at {_s(t)}: a joining worker "
                    "needs a name that is not in use",
                )
            )
            ok = False
        host = event.host or self.topology.first_host()
        if not self.topology.has_host(host):
            hosts = ", ".join(self.topology.hosts())
            self.problems.append(((*here, "host"), f"no host named '{host}' (hosts: {hosts})"))
            return None
        gpus = self.topology.gpus_of(host)
        if event.gpu is not None and event.gpu >= gpus:
            self.problems.append(
                ((*here, "gpu"), f"host '{host}' has {gpus} GPU(s), no GPU {event.gpu}")
            )
            ok = False
        if self.scenario.backend == "nccl" and gpus == 0:
            self.problems.append(
                (
                    (*here, "host"),
                    f"backend nccl needs a GPU per worker, but host '{host}' has gpus: 0",
                )
            )
            ok = False
        for world, members in event.worlds.items():
            loc = (*here, "worlds", world)
            ok &= self._free_world_name(world, t, loc)
            ok &= self._members_ok(world, members, t, loc, joiner=event.worker)
            if event.worker not in members:
                self.problems.append(
                    (loc, f"world '{world}' of joining worker '{event.worker}' does not list it")
                )
                ok = False
        if not ok:
            return None
        self.topology.add_worker(event.worker, host, event.gpu)
        self._start_worker(event.worker, t, "join", index)
        for world, members in event.worlds.items():
            self.topology.add_world(world, members)
            self._start_world(world, members, t, "join", index)
        return Step(index, event, (event.worker,), tuple(event.worlds))

    def _add_world(self, index: int, event: AddWorld, t: float, here: Loc) -> Step | None:
        ok = self._free_world_name(event.world, t, (*here, "world"))
        ok &= self._members_ok(event.world, event.members, t, (*here, "members"))
        if not ok:
            return None
        self.topology.add_world(event.world, event.members)
        self._start_world(event.world, event.members, t, "add_world", index)
        return Step(index, event, tuple(event.members), (event.world,))

    def _remove_world(self, index: int, event: RemoveWorld, t: float, here: Loc) -> Step | None:
        loc = (*here, "world")
        if not self.topology.has_world(event.world):
            ended = [life for life in self.all_worlds if life.name == event.world]
            if ended and ended[-1].end is not None:
                last = ended[-1]
                message = (
                    f"world '{event.world}' is gone at {_s(t)}: it ended by {last.end_cause} "
                    f"at {_s(last.end or 0)}"
                )
            else:
                known = ", ".join(self.topology.worlds()[:8]) or "none"
                message = f"no world named '{event.world}' at {_s(t)} (worlds: {known})"
            self.problems.append((loc, message))
            return None
        members = self.topology.members(event.world)
        hung = [m for m in members if m in self.hung]
        if hung:
            self.problems.append(
                (
                    loc,
                    f"world '{event.world}' cannot be removed gracefully at {_s(t)}: "
                    f"member '{hung[0]}' is hung",
                )
            )
            return None
        self.topology.remove_world(event.world)
        self._end_world(event.world, t, "remove_world", index, None)
        return Step(index, event, tuple(members), (event.world,))


def _walk(scenario: Scenario) -> tuple[Timeline | None, list[tuple[Loc, str]]]:
    spec = scenario.topology
    if isinstance(spec, ExplicitSpec):
        problems = _explicit_problems(spec, scenario.backend)
        if problems:
            return None, problems
    if isinstance(spec, PipelineSpec) and isinstance(spec.stages, list) and spec.replicas:
        message = "replicas goes with a stage count (stages: 3); a list gives replicas per stage"
        return None, [(("topology", "replicas"), message)]
    planner = Timeline(scenario, scenario.build_topology())
    for index, event in scenario.ordered_events():
        planner.apply(index, event)
    return planner, planner.problems


def plan_problems(scenario: Scenario) -> list[tuple[Loc, str]]:
    """Every reason the scenario's timeline is impossible, each with its data path."""
    return _walk(scenario)[1]


def plan(scenario: Scenario) -> Plan:
    """The membership timeline of a valid scenario (``PlanError`` if it is not valid)."""
    planner, problems = _walk(scenario)
    if planner is None or problems:
        raise PlanError(problems)
    return Plan(
        planner.initial,
        planner.all_workers,
        planner.all_worlds,
        planner.steps,
        scenario.duration_s,
    )
