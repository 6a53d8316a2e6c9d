"""The membership timeline of a scenario: which workers and worlds exist, and when.

A ``Membership`` applies events in time order to an evolving ``Topology`` and records the
life of every worker and every world incarnation (a name may be used again once its
earlier bearer is gone); an impossible event is recorded as a problem with the data path
it is about, so the loader can point at a line. A walk over a whole scenario gives its
``Plan``: the lives and the resolved steps that the simulator, the replay, the checks and
the reports all read. Identities are explicit: a world incarnation is a ``WorldId``
(name, life), a worker incarnation a ``WorkerLife`` with its ``incarnation`` number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mwsim.errors import Loc, PlanError
from mwsim.events import (
    AddWorld,
    AnyEvent,
    Crash,
    CrashHost,
    Degrade,
    GpuError,
    GpuHang,
    GpuSlow,
    Hang,
    Join,
    Kind,
    Leave,
    Partition,
    PowerOff,
    RemoveWorld,
    Slow,
    Target,
)
from mwsim.topology import Topology


def _s(t: float) -> str:
    return f"{t:g} s"


@dataclass(frozen=True, order=True)
class WorldId:
    """One world incarnation: its name and its life (0 for the first world of that name)."""

    name: str
    life: int = 0

    @property
    def instance(self) -> str:
        """The runtime's name for it (MultiWorld refuses to reuse a name)."""
        return self.name if self.life == 0 else f"{self.name}~{self.life}"

    def attrs(self) -> dict[str, Any]:
        """How history events name it: ``life`` only for a name used again."""
        return {"world": self.name, "life": self.life} if self.life else {"world": self.name}


@dataclass
class Span:
    """A lasting fault during a world's life: a hang or slow of a member (``subject`` the
    worker), a partition cutting it or a degraded link of a member's host (``subject`` the
    event's hosts); ``end`` None = to the run's end."""

    kind: Kind
    subject: str
    start: float
    end: float | None
    event: int  # the step (index in the scenario's events) that began it


@dataclass
class WorldLife:
    """One incarnation of a world, from its formation to its end (if it ends)."""

    id: WorldId
    members: tuple[str, ...]
    start: float
    origin: Kind | None = None  # the event that formed it (None: there from the start)
    origin_event: int | None = None
    end: float | None = None
    end_cause: Kind | None = None
    end_event: int | None = None
    end_worker: str | None = None
    spans: list[Span] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.id.name

    def alive_at(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass
class WorkerLife:
    """One worker process: from start (0 for the initial ones, or its join) to its end."""

    name: str
    incarnation: int  # 0 for the first process of that name
    host: str
    gpu: int | None
    start: float
    origin_event: int | None = None  # the join that started it (None: there from the start)
    end: float | None = None
    end_cause: Kind | None = None
    end_event: int | None = None


@dataclass(frozen=True)
class Step:
    """A scenario event as resolved at its time: the processes it acts on, the worlds it hits."""

    index: int  # position in the scenario's events (its identity)
    event: AnyEvent
    workers: tuple[str, ...] = ()
    worlds: tuple[str, ...] = ()
    #: A partition: per world it cuts, each member with members across the cut, and those.
    cut: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)

    @property
    def kind(self) -> Kind:
        return self.event.kind

    def record(self) -> dict[str, Any]:
        """The fields of its ``fault`` or ``scale`` history record."""
        out = self.event.record()
        if self.event.info.target is Target.HOST and self.workers:
            out["workers"] = list(self.workers)
        return out


class Plan:
    """Every worker and world life of a scenario, and its resolved steps in time order."""

    def __init__(
        self,
        initial: Topology,
        workers: list[WorkerLife],
        worlds: list[WorldLife],
        steps: list[Step],
        duration: float,
    ) -> None:
        self.initial = initial
        self.workers = workers
        self.worlds = worlds
        self.steps = steps
        self.duration = duration
        self._lives: dict[str, list[WorldLife]] = defaultdict(list)
        self._rows: dict[WorldId, int] = {}
        self._formed_by: dict[int, list[WorldLife]] = defaultdict(list)
        self._incarnations: dict[str, list[WorkerLife]] = defaultdict(list)
        for row, life in enumerate(worlds):
            self._lives[life.name].append(life)
            self._rows[life.id] = row
            if life.origin_event is not None:
                self._formed_by[life.origin_event].append(life)
        for worker in workers:
            self._incarnations[worker.name].append(worker)

    def lives_of(self, world: str) -> list[WorldLife]:
        return self._lives.get(world, [])

    def world(self, world_id: WorldId) -> WorldLife:
        return self.worlds[self._rows[world_id]]

    def row(self, world_id: WorldId) -> int:
        """Position of a world incarnation in ``worlds`` (its row in reports)."""
        return self._rows[world_id]

    def label(self, life: WorldLife) -> str:
        """How reports name it: ``name``, or ``name#k`` (k from 1) for a name used again."""
        if len(self.lives_of(life.name)) == 1:
            return life.name
        return f"{life.name}#{life.id.life + 1}"

    def resolve(self, world: str, life: int | None, t: float) -> WorldLife | None:
        """The incarnation a history event names: its ``life`` if given (None if there is
        no such life), else the latest one formed by ``t``. None for an unknown world."""
        lives = self.lives_of(world)
        if not lives:
            return None
        if life is not None:
            return lives[life] if 0 <= life < len(lives) else None
        by = max(t, 0.0) + 1e-6
        return next((x for x in reversed(lives) if x.start <= by), lives[0])

    def life_at(self, world: str, t: float) -> WorldLife | None:
        return next((x for x in self.lives_of(world) if x.alive_at(t)), None)

    def formed_by(self, step: Step) -> list[WorldLife]:
        """The worlds a join or add_world forms."""
        return self._formed_by.get(step.index, [])

    def worker(self, name: str, t: float | None = None) -> WorkerLife:
        """The incarnation of ``name`` started last by ``t`` (default: the last one)."""
        lives = self._incarnations[name]
        if t is not None:
            lives = [w for w in lives if w.start <= t] or lives
        return lives[-1]


def members_problems(
    world: str, members: Sequence[str], loc: Loc, exists: Callable[[str], bool]
) -> list[tuple[Loc, str]]:
    """What is wrong with a world's member list (too short, a member twice, unknown)."""
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


class Membership:
    """The membership state of a scenario as its events are applied in time order.

    ``apply`` records what is wrong with an impossible event and leaves the state as it
    was; ``try_apply`` does the same silently and says whether the event was taken, so a
    generator can use the very rules the validator uses. ``upcoming`` are the scenario's
    events (to say "it joins later" of a worker that does not exist yet).
    """

    def __init__(
        self,
        topology: Topology,
        *,
        duration_s: float,
        backend: str,
        upcoming: Iterable[AnyEvent] = (),
    ) -> None:
        self.initial = topology.copy()
        self.topology = topology
        self.duration_s = duration_s
        self.backend = backend
        self.problems: list[tuple[Loc, str]] = []
        self.workers: dict[str, WorkerLife] = {}
        self.all_workers: list[WorkerLife] = []
        self.worlds: dict[str, WorldLife] = {}
        self.all_worlds: list[WorldLife] = []
        self.steps: list[Step] = []
        self.hung: dict[str, Span] = {}
        self.slow: dict[str, Span] = {}
        self.cuts: dict[str, Span] = {}  # host -> the partition it is under
        self.partitions: dict[int, Partition] = {}  # by event index
        self.degraded: dict[str, Span] = {}  # host -> its degraded link
        self.off: dict[str, tuple[float, int]] = {}  # powered-off host -> (when, event)
        self.gone: dict[str, WorkerLife] = {}
        self.joins: dict[str, list[float]] = defaultdict(list)
        self._world_lives: dict[str, int] = defaultdict(int)
        self._worker_lives: dict[str, int] = defaultdict(int)
        for event in upcoming:
            if isinstance(event, Join):
                self.joins[event.worker].append(event.at)
        for name in topology.workers():
            self._start_worker(name, 0.0, None)
        for name in topology.worlds():
            self._start_world(name, topology.members(name), 0.0, None, None)

    # -- bookkeeping -------------------------------------------------------------------

    def _start_worker(self, name: str, t: float, index: int | None) -> None:
        incarnation = self._worker_lives[name]
        self._worker_lives[name] += 1
        life = WorkerLife(
            name, incarnation, self.topology.host_of(name), self.topology.gpu_of(name), t, index
        )
        self.workers[name] = life
        self.all_workers.append(life)
        self.gone.pop(name, None)

    def _start_world(
        self,
        name: str,
        members: Sequence[str],
        t: float,
        origin: Kind | None,
        index: int | None,
    ) -> None:
        world_id = WorldId(name, self._world_lives[name])
        self._world_lives[name] += 1
        life = WorldLife(world_id, tuple(members), t, origin, index)
        for worker in members:  # a member already slow slows the new world too
            span = self.slow.get(worker)
            if span is not None:
                life.spans.append(span)
        self.worlds[name] = life
        self.all_worlds.append(life)

    def _end_world(self, name: str, t: float, cause: Kind, index: int, worker: str | None) -> None:
        life = self.worlds.pop(name)
        life.end, life.end_cause, life.end_event, life.end_worker = t, cause, index, worker

    def _kill(self, worker: str, t: float, cause: Kind, index: int) -> list[str]:
        ended = self.topology.blast_radius([worker])
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
        for table in (self.hung, self.slow, self.cuts, self.degraded):
            for name, span in list(table.items()):
                if span.end is not None and span.end <= t:
                    del table[name]

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
            return (
                f"'{name}' is a host, not a worker (use do: {Kind.CRASH_HOST} to crash its workers)"
            )
        known = self.topology.workers()
        shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        return f"no worker named '{name}' (running at {_s(t)}: {shown or 'none'})"

    def _running(self, name: str, t: float, loc: Loc, *, hung_ok: bool, why: str = "") -> bool:
        problem = self._worker_problem(name, t)
        if problem is None and not hung_ok and name in self.hung:
            span = self.hung[name]
            until = f"until {_s(span.end)}" if span.end is not None else "for good"
            what = {Kind.GPU_HANG: ": its GPU is hung", Kind.GPU_ERROR: ": its GPU has failed"}
            problem = (
                f"worker '{name}'{what.get(span.kind, ' is hung')} at {_s(t)} "
                f"(since {_s(span.start)}, {until}){why}"
            )
        if problem is not None:
            self.problems.append((loc, problem))
            return False
        return True

    def _host_problem(self, name: str, t: float) -> str | None:
        """Why ``name`` is not a host that is up at ``t`` (None when it is)."""
        if not self.topology.has_host(name):
            hint = ""
            if self.topology.has_worker(name) or name in self.gone:
                hint = f" ('{name}' is a worker)"
            hosts = ", ".join(self.topology.hosts())
            return f"no host named '{name}' (hosts: {hosts}){hint}"
        if name in self.off:
            when, index = self.off[name]
            return f"host '{name}' is powered off at {_s(t)} (since {_s(when)}, events[{index}])"
        return None

    def _host_ok(self, name: str, t: float, loc: Loc) -> bool:
        problem = self._host_problem(name, t)
        if problem is not None:
            self.problems.append((loc, problem))
        return problem is None

    def _across_a_cut(
        self, world: str, members: Sequence[str], loc: Loc, joiner: tuple[str, str] | None = None
    ) -> bool:
        """A new world must not span a partition in force (it could not form)."""
        hosts = [self.topology.host_of(m) for m in members if self.topology.has_worker(m)]
        if joiner is not None:
            hosts.append(joiner[1])
        for index in {self.cuts[h].event for h in hosts if h in self.cuts}:
            event = self.partitions[index]
            side_of = {h: i for i, side in enumerate(event.sides()) for h in side}
            present = {side_of[h] for h in hosts if h in side_of}
            if len(present) > 1:
                self.problems.append(
                    (
                        loc,
                        f"world '{world}' would span the partition of events[{index}] "
                        f"({event.subject}): it could not form",
                    )
                )
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

    def _members_ok(
        self, world: str, members: Sequence[str], t: float, loc: Loc, joiner: str | None = None
    ) -> bool:
        problems = members_problems(world, members, loc, lambda m: True)
        ok = not problems
        self.problems += problems
        for k, member in enumerate(members):
            if member != joiner and not self._running(
                member, t, (*loc, k), hung_ok=False, why=" and cannot form a world"
            ):
                ok = False
        return ok

    # -- events ------------------------------------------------------------------------

    def try_apply(self, event: AnyEvent) -> bool:
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

    def apply(self, index: int, event: AnyEvent) -> None:
        """Apply the scenario's event number ``index``; record why if it is impossible."""
        t = event.at
        here: Loc = ("events", index)
        self._expire(t)
        if t > self.duration_s:
            self.problems.append(
                (
                    (*here, "at"),
                    f"{_s(t)} is after the end of the run (duration_s: {self.duration_s:g})",
                )
            )
            return
        step: Step | None
        match event:
            case Crash() | Leave():
                step = self._end(index, event, t, here)
            case Hang():
                step = self._hang(index, event, t, here)
            case Slow():
                step = self._slow(index, event, t, here)
            case GpuHang() | GpuError():
                step = self._hang(index, event, t, here) if self._gpu_ok(event, here) else None
            case GpuSlow():
                step = self._slow(index, event, t, here) if self._gpu_ok(event, here) else None
            case CrashHost() | PowerOff():
                step = self._host_down(index, event, t, here)
            case Join():
                step = self._join(index, event, t, here)
            case AddWorld():
                step = self._add_world(index, event, t, here)
            case RemoveWorld():
                step = self._remove_world(index, event, t, here)
            case Partition():
                step = self._partition(index, event, t, here)
            case Degrade():
                step = self._degrade(index, event, t, here)
        if step is not None:
            self.steps.append(step)

    def _end(self, index: int, event: Crash | Leave, t: float, here: Loc) -> Step | None:
        leaving = isinstance(event, Leave)
        why = " and cannot leave gracefully (crash it instead)" if leaving else ""
        if not self._running(event.target, t, (*here, "target"), hung_ok=not leaving, why=why):
            return None
        ended = self._kill(event.target, t, event.kind, index)
        return Step(index, event, (event.target,), tuple(ended))

    def _gpu_ok(self, event: GpuHang | GpuError | GpuSlow, here: Loc) -> bool:
        """A GPU fault needs GPUs: a scenario on backend nccl (a GPU per worker)."""
        if self.backend == "nccl":
            return True
        self.problems.append(
            (
                (*here, "do"),
                f"{event.kind} acts on a worker's GPU, but this scenario runs on backend "
                f"{self.backend}, without GPUs (use backend: nccl on hosts with gpus)",
            )
        )
        return False

    def _hang(
        self, index: int, event: Hang | GpuHang | GpuError, t: float, here: Loc
    ) -> Step | None:
        """A stopped process (a hang), or a stopped or failed GPU: the worker's worlds stop
        and it can do nothing for them (leave, form or remove a world) until it ends."""
        if not self._running(event.target, t, (*here, "target"), hung_ok=False):
            return None
        lasts = event.lasts()
        end = t + lasts if lasts is not None else None
        span = Span(event.kind, event.target, t, end, index)
        self.hung[event.target] = span
        worlds = self.topology.blast_radius([event.target])
        for world in worlds:
            self.worlds[world].spans.append(span)
        return Step(index, event, (event.target,), tuple(worlds))

    def _slow(self, index: int, event: Slow | GpuSlow, t: float, here: Loc) -> Step | None:
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
        span = Span(event.kind, event.target, t, end, index)
        self.slow[event.target] = span
        worlds = self.topology.worlds_of(event.target)
        for world in worlds:
            self.worlds[world].spans.append(span)
        return Step(index, event, (event.target,), tuple(worlds))

    def _host_down(
        self, index: int, event: CrashHost | PowerOff, t: float, here: Loc
    ) -> Step | None:
        """A host crash (its kernel lives on) or power-off (the host is gone for good)."""
        loc = (*here, "target")
        problem = self._host_problem(event.target, t)
        if problem is not None and "is a worker" in problem:
            problem = problem[:-1] + f": use do: {Kind.CRASH})"
        if problem is not None:
            self.problems.append((loc, problem))
            return None
        victims = self.topology.workers_on(event.target)
        if not victims:
            what = Kind.CRASH.value if isinstance(event, CrashHost) else "power off"
            self.problems.append(
                (loc, f"host '{event.target}' has no running worker at {_s(t)}: nothing to {what}")
            )
            return None
        ended: list[str] = []
        for worker in victims:
            ended += self._kill(worker, t, event.kind, index)
        if isinstance(event, PowerOff):
            self.off[event.target] = (t, index)
            span = self.degraded.pop(event.target, None)
            if span is not None and (span.end is None or span.end > t):
                span.end = t
        return Step(index, event, tuple(victims), tuple(ended))

    def _partition(self, index: int, event: Partition, t: float, here: Loc) -> Step | None:
        before = len(self.problems)
        sides = event.sides()
        if not event.one_way and len(sides) < 2:
            self.problems.append(
                ((*here, "groups"), f"a partition needs at least 2 groups, has {len(sides)}")
            )
        seen: set[str] = set()
        for i, side in enumerate(sides):
            where: Loc = (*here, "groups", i) if not event.one_way else (*here, ("from", "to")[i])
            if not side:
                self.problems.append((where, "an empty side: name at least one host"))
            for k, host in enumerate(side):
                problem = self._host_problem(host, t)
                if problem is None and host in seen:
                    problem = f"host '{host}' is on two sides of the partition"
                elif problem is None and host in self.cuts:
                    span = self.cuts[host]
                    until = f"until {_s(span.end)}" if span.end is not None else "for good"
                    problem = (
                        f"host '{host}' is already partitioned at {_s(t)} "
                        f"(events[{span.event}], {until})"
                    )
                if problem is not None:
                    self.problems.append(((*where, k), problem))
                seen.add(host)
        if len(self.problems) > before:
            return None
        cut = self.topology.cut(sides, event.one_way)
        lasts = event.lasts()
        span = Span(event.kind, event.subject, t, t + lasts if lasts is not None else None, index)
        self.partitions[index] = event
        for host in seen:
            self.cuts[host] = span
        for world in cut:
            self.worlds[world].spans.append(span)
        across = {w: {m: tuple(o) for m, o in ms.items()} for w, ms in cut.items()}
        return Step(index, event, (), tuple(sorted(cut)), across)

    def _degrade(self, index: int, event: Degrade, t: float, here: Loc) -> Step | None:
        loc = (*here, "target")
        if not self._host_ok(event.target, t, loc):
            return None
        if event.target in self.degraded:
            span = self.degraded[event.target]
            until = f"until {_s(span.end)}" if span.end is not None else "to the end"
            self.problems.append(
                (loc, f"host '{event.target}' is already degraded at {_s(t)} ({until})")
            )
            return None
        lasts = event.lasts()
        span = Span(event.kind, event.target, t, t + lasts if lasts is not None else None, index)
        self.degraded[event.target] = span
        others = [h for h in self.topology.hosts() if h != event.target]
        worlds = sorted(self.topology.cut([[event.target], others]))
        for world in worlds:
            self.worlds[world].spans.append(span)
        return Step(index, event, (), tuple(worlds))

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
        if not self._host_ok(host, t, (*here, "host")):
            return None
        gpus = self.topology.gpus_of(host)
        if event.gpu is not None and event.gpu >= gpus:
            self.problems.append(
                ((*here, "gpu"), f"host '{host}' has {gpus} GPU(s), no GPU {event.gpu}")
            )
            ok = False
        if self.backend == "nccl" and gpus == 0:
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
            ok = ok and self._across_a_cut(world, members, loc, joiner=(event.worker, host))
            if event.worker not in members:
                self.problems.append(
                    (loc, f"world '{world}' of joining worker '{event.worker}' does not list it")
                )
                ok = False
        if not ok:
            return None
        self.topology.add_worker(event.worker, host, event.gpu)
        self._start_worker(event.worker, t, index)
        for world, members in event.worlds.items():
            self.topology.add_world(world, members)
            self._start_world(world, members, t, event.kind, index)
        return Step(index, event, (event.worker,), tuple(event.worlds))

    def _add_world(self, index: int, event: AddWorld, t: float, here: Loc) -> Step | None:
        ok = self._free_world_name(event.world, t, (*here, "world"))
        ok &= self._members_ok(event.world, event.members, t, (*here, "members"))
        ok = ok and self._across_a_cut(event.world, event.members, (*here, "members"))
        if not ok:
            return None
        self.topology.add_world(event.world, event.members)
        self._start_world(event.world, event.members, t, event.kind, index)
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
        self._end_world(event.world, t, event.kind, index, None)
        return Step(index, event, tuple(members), (event.world,))

    def plan(self) -> Plan:
        """The lives and steps so far (``PlanError`` if any event was impossible)."""
        if self.problems:
            raise PlanError(self.problems)
        return Plan(self.initial, self.all_workers, self.all_worlds, self.steps, self.duration_s)
