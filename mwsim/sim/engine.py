"""A simpy model of a deployment: the History a correct MultiWorld run must produce.

``Simulation`` is an ``Executor`` (:mod:`mwsim.playback`) on simpy's virtual clock: each
action of the plan is a simpy process that acts at its time, through the same dispatch
as the real replay. Each detection a fault causes is a simpy process that sleeps until
the instant the runtime's mechanism (a failing op, a lost store, the watchdog) would
flag the world, sampled inside the window the model allows. Op streams are passive: the
ops between two state changes of a world are produced in one go when the state changes,
so neither ops nor heartbeats become simpy events, and thousands of workers over hours
cost little.
"""

from __future__ import annotations

import importlib.metadata
import math
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from mwsim.events import AnyEvent, Degrade, GpuSlow, Kind, Partition, Slow
from mwsim.history import (
    Broken,
    Exit,
    Fault,
    History,
    Hygiene,
    Joined,
    Left,
    Mode,
    Op,
    Ops,
    Phase,
    PhaseName,
    Record,
    Resumed,
    Run,
    Scale,
)
from mwsim.internal.rng import seeded
from mwsim.membership import Plan, Step, WorldLife
from mwsim.playback import Action, actions, dispatch
from mwsim.scenario import Scenario
from mwsim.sim.serving import Carrier, serve
from mwsim.timing import (
    Mechanism,
    RuntimeModel,
    detection_window,
    failing_peers,
    model_for,
    sized,
)

_VERSION = importlib.metadata.version("mwsim")

#: Beyond this many predicted ops, ops are written as spans (``ops`` events).
OP_EVENT_LIMIT = 250_000
MIN_PERIOD_S = 0.001  # the fastest a runtime turns ops around (interval_ms: 0)

Process = Generator[simpy.Event, Any, None]


@dataclass
class _Stream:
    """One op stream of a world: the member that records it, and from which peer."""

    recorder: str
    peer: str | None
    offset: float  # within a round, after the round's start
    seq: int = 0


@dataclass
class _World:
    """A world life in the model: its op streams and whether they run."""

    life: WorldLife
    streams: list[_Stream]
    period: float
    formed: bool = False
    ended: bool = False  # its ops stopped (a fault or a detection)
    closed: bool = False  # the world is gone (its life in the plan ended)
    next_op: float = 0.0
    paused: set[str] = field(default_factory=set)  # hung members, partitions cutting it
    reported: set[str] = field(default_factory=set)
    rtts: dict[int, float] = field(default_factory=dict)  # degraded links it crosses
    up: list[tuple[float, float]] = field(default_factory=list)  # serve: when it could carry

    @property
    def rtt(self) -> float:
        """The extra round-trip time of its slowest degraded link."""
        return max(self.rtts.values(), default=0.0)

    @property
    def serving(self) -> bool:
        return self.formed and not self.ended and not self.paused

    def attrs(self) -> dict[str, Any]:
        return self.life.id.attrs()


class Simulation:
    """One simulated run of a scenario; ``run()`` returns its History."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int | None = None,
        model: RuntimeModel | None = None,
        detail: str = "auto",
    ) -> None:
        self.scenario = scenario
        self.plan: Plan = scenario.plan
        self.model = sized(model or model_for(scenario.runtime), scenario)
        self.seed = scenario.seed if seed is None else seed
        self.rng: random.Random = seeded(self.seed)
        self.env = simpy.Environment()
        self.kind = scenario.workload.kind
        self.interval = scenario.workload.interval_s
        self.op_interval = scenario.op_interval_s  # the longest quiet gap between ops
        self.events: list[Record] = []
        self.worlds: list[_World] = [self._world(life) for life in self.plan.worlds]
        self.by_member: dict[str, list[_World]] = {}
        self.by_origin: dict[int, list[_World]] = {}
        for world in self.worlds:
            for member in world.life.members:
                self.by_member.setdefault(member, []).append(world)
            if world.life.origin_event is not None:
                self.by_origin.setdefault(world.life.origin_event, []).append(world)
        self.alive: set[str] = set()
        self.hung: dict[str, float | None] = {}  # worker -> when its hang ends
        self.delays: dict[str, float] = {}  # a slow worker -> its delay
        self.cuts: set[int] = set()  # partitions in force (by step)
        self.hung_by: dict[str, int] = {}  # worker -> the step of its current hang
        self.slowed_by: dict[str, int] = {}  # worker -> the step of its current slow
        self.gpu_stopped: dict[str, int] = {}  # worker -> the step that hung or broke its GPU
        self.phase: dict[str, float] = {}  # each process's watchdog phase
        self.died_at: dict[str, float] = {}
        self.ready_at: dict[str, float] = {}  # when each worker's process is up
        self.spans = detail == "spans" or (
            detail == "auto" and self._ops_estimate() > OP_EVENT_LIMIT
        )

    # -- building ------------------------------------------------------------------------

    def _world(self, life: WorldLife) -> _World:
        members = life.members
        latency = self.model.op_latency_s
        if self.kind == "allreduce":
            streams = [_Stream(m, None, latency) for m in members]
        else:
            streams = [_Stream(members[0], p, latency * k) for k, p in enumerate(members[1:], 1)]
        return _World(life, streams, max(self.interval, MIN_PERIOD_S))

    def _ops_estimate(self) -> float:
        total = 0.0
        period = max(self.interval, MIN_PERIOD_S)
        for life in self.plan.worlds:
            end = min(life.end if life.end is not None else math.inf, self.scenario.duration_s)
            total += max(0.0, end - life.start) / period * len(life.members)
        return total

    def _emit(self, kind: type[Record], t: float, **attrs: Any) -> None:
        self.events.append(kind.of(round(t, 6), **attrs))

    # -- op streams ----------------------------------------------------------------------

    def _flush(self, world: _World, until: float) -> None:
        """Produce the ops a serving world completes before ``until``."""
        if not world.serving or world.next_op >= until:
            return
        if self.kind == "serve":  # requests make its ops (sim.serving): note the stretch
            world.up.append((world.next_op, until))
            world.next_op = until
            return
        count = math.ceil((until - world.next_op) / world.period - 1e-9)
        first = world.next_op
        for stream in world.streams:
            arrive = first + stream.offset + self._lag(world)  # the first op's instant
            if self.spans:
                last_t = arrive + (count - 1) * world.period
                attrs = dict(world.attrs(), worker=stream.recorder)
                if stream.peer is not None:
                    attrs["peer"] = stream.peer
                self._emit(
                    Ops,
                    last_t,
                    **attrs,
                    first=stream.seq,
                    last=stream.seq + count - 1,
                    t0=round(arrive, 6),
                )
            else:
                for k in range(count):
                    attrs = dict(world.attrs(), worker=stream.recorder, seq=stream.seq + k, ok=True)
                    if stream.peer is not None:
                        attrs["peer"] = stream.peer
                    self._emit(Op, arrive + k * world.period, **attrs)
            stream.seq += count
        world.next_op = first + count * world.period

    def _end(self, world: _World, t: float) -> None:
        self._flush(world, t)
        world.ended = True

    def _close(self, world: _World, t: float) -> None:
        self._end(world, t)
        world.closed = True

    def _set_period(self, world: _World, t: float) -> None:
        self._flush(world, t)
        delays = [self.delays.get(m, 0.0) for m in world.life.members]
        slowest = max(max(delays), world.rtt) + self.model.op_latency_s  # a round trip per op
        world.period = max(self.interval, MIN_PERIOD_S, slowest)

    def _worlds_of(self, worker: str, t: float) -> list[_World]:
        return [
            w
            for w in self.by_member.get(worker, [])
            if w.life.start <= t and (w.life.end is None or t <= w.life.end) and not w.closed
        ]

    # -- detection -----------------------------------------------------------------------

    def _watchdog_phase(self, worker: str) -> float:
        if worker not in self.phase:
            self.phase[worker] = self.rng.uniform(0.0, self.model.check_s)
        return self.phase[worker]

    def _sample(
        self, how: Mechanism, world: _World, t: float, survivor: str, blocked: bool
    ) -> float:
        """The instant a mechanism flags the world, for a fault at ``t``."""
        m = self.model
        if how is Mechanism.OP:
            if blocked:
                return t + m.fail_s + m.poll_s
            period = world.period
            ahead = math.ceil(max(0.0, t - world.next_op) / period) * period
            return max(t, world.next_op + ahead) + m.fail_s + m.poll_s
        if how is Mechanism.STORE:
            return t + self.rng.uniform(0.0, m.tick_s) + m.fail_s + m.poll_s
        last_tick = t - self.rng.uniform(0.0, m.tick_s)
        phase = self._watchdog_phase(survivor)
        checks_before = math.floor((last_tick - phase) / m.check_s) + 1
        first_check = phase + checks_before * m.check_s
        return first_check + m.check_s + m.poll_s

    def _detect(
        self,
        world: _World,
        peers: dict[int, list[int]],
        event: AnyEvent,
        t: float,
        resume: float | None,
        still: Callable[[], bool],
    ) -> None:
        """Schedule each survivor's report of ``world`` (``peers``: survivor rank -> the
        ranks whose loss it notices); several may be lost at once (a host crash): the
        earliest mechanism fires. ``resume``: when a silent fault ends (a hang, a
        partition); ``still()``: is the fault still in effect when the report falls due."""
        members = world.life.members
        for rank, others in peers.items():
            survivor = members[rank]
            if survivor not in self.alive or not others:
                continue
            back = self.hung.get(survivor, 0.0) if survivor in self.hung else None
            if survivor in self.hung and back is None:
                continue  # hung for good: it never gets to look
            silent = event.silent_to(self.plan.worker(survivor, t).host)
            if event.kind is Kind.PARTITION and self.scenario.only_receives(rank):
                silent = True
            options = []
            for bad in others:
                window = detection_window(
                    self.model, self.kind, self.op_interval, silent, rank, bad
                )
                blocked = self.kind != "allreduce" and (rank == 0 or bad == 0)
                at = self._sample(window.how, world, t, survivor, blocked)
                options.append((at, window.lo, window.hi, window.how))
            at, _, _, how = min(options)
            lo, hi = min(o[1] for o in options), min(o[2] for o in options)
            optional = resume is not None and resume < t + hi - self.model.slack_s
            if back is not None:  # the survivor is stopped itself: it looks once it resumes
                at = max(at, back + self.model.fail_s + self.model.poll_s)
                hi = max(hi, back - t + hi)
                optional = True
            if resume is not None and at >= resume:
                continue  # the fault ended before the watchdog looked twice
            self.env.process(
                self._report(world, survivor, at, (t + lo, t + hi), how, optional, still)
            )

    def _report(
        self,
        world: _World,
        survivor: str,
        at: float,
        window: tuple[float, float],
        how: Mechanism,
        optional: bool,
        still: Callable[[], bool],
    ) -> Process:
        yield self.env.timeout(max(0.0, at - self.env.now))
        if survivor not in self.alive or survivor in world.reported or not still():
            return
        world.reported.add(survivor)
        attrs = dict(world.attrs(), worker=survivor, reason=f"model: {how}")
        attrs["window"] = (round(window[0], 6), round(window[1], 6))
        self._emit(Broken, at, **attrs, optional=optional)
        self._end(world, at)

    # -- the executor's verbs --------------------------------------------------------------

    def _fault(self, step: Step) -> float:
        """Record a fault as injected now (the model's faults always take)."""
        t = float(self.env.now)
        self._emit(Fault, t, **step.record(), confirmed=True)
        return t

    def _kill(self, step: Step, t: float, code: int) -> None:
        """End the step's workers at once; their worlds close and the survivors notice."""
        workers = step.workers
        worlds = {id(w): w for worker in workers for w in self._worlds_of(worker, t)}
        for worker in workers:
            self.alive.discard(worker)
            self.hung.pop(worker, None)
            self.delays.pop(worker, None)
            self.hung_by.pop(worker, None)
            self.slowed_by.pop(worker, None)
            self.gpu_stopped.pop(worker, None)
            self.died_at[worker] = t
        for world in worlds.values():
            formed = world.formed
            self._close(world, t)
            if formed:  # a world that never formed has nobody waiting on it
                peers = failing_peers(step, world.life)
                self._detect(world, peers, step.event, t, None, lambda: True)
        gone = t + (self.model.kill_s if code else self.model.leave_s)
        for worker in workers:
            self._emit(Exit, gone, worker=worker, code=code, expected=True)

    def _exit_code(self, step: Step) -> int:
        code = step.event.info.exit_code
        assert code is not None, f"{step.kind} does not end its workers"
        return code

    def crash(self, step: Step) -> None:
        t = self._fault(step)
        self._kill(step, t, self._exit_code(step))

    def power_off(self, step: Step) -> None:
        self.crash(step)  # silent: the step's event says so to the detection

    def leave(self, step: Step) -> None:
        t = self._fault(step)
        target = step.event.subject
        for world in self._worlds_of(target, t):
            self._emit(Left, t + self.model.leave_s / 2, **world.attrs(), worker=target)
        self._kill(step, t, self._exit_code(step))

    def hang(self, step: Step) -> None:
        t = self._fault(step)
        target, lasts = step.event.subject, step.event.lasts()
        resume = t + lasts if lasts is not None else None
        self.hung[target] = resume
        self.hung_by[target] = step.index

        def still() -> bool:  # dead, or still stopped
            return target not in self.alive or target in self.hung

        for world in self._worlds_of(target, t):
            self._flush(world, t)
            world.paused.add(target)
            if world.formed:
                peers = failing_peers(step, world.life)
                self._detect(world, peers, step.event, t, resume, still)

    def resume(self, step: Step) -> None:
        at, worker = self.env.now, step.event.subject
        if worker not in self.hung or self.hung_by.get(worker) != step.index:
            return  # it died meanwhile
        del self.hung[worker]  # also when it was still starting up: SIGCONT reaches it anyway
        self._emit(Resumed, at, do=step.kind.value, target=worker, confirmed=True)
        for world in self._worlds_of(worker, at):
            world.paused.discard(worker)
            if world.serving:
                world.next_op = at

    def slow(self, step: Step) -> None:
        t = self._fault(step)
        assert isinstance(step.event, Slow)
        target = step.event.target
        self.delays[target] = step.event.delay_ms / 1000
        self.slowed_by[target] = step.index
        for world in self._worlds_of(target, t):
            self._set_period(world, t)

    def restore(self, step: Step) -> None:
        at, worker = self.env.now, step.event.subject
        if worker not in self.alive or self.slowed_by.get(worker) != step.index:
            return
        self.delays.pop(worker, None)
        self._emit(Resumed, at, do=step.kind.value, target=worker, confirmed=True)
        for world in self._worlds_of(worker, at):
            self._set_period(world, at)

    # -- GPU faults: the process runs on; only its GPU work stops, fails or slows ----------

    def _gpu_stop(self, step: Step) -> tuple[float, str, list[_World]]:
        """The worker's worlds stop serving (their ops wait on its GPU)."""
        t = self._fault(step)
        target = step.event.subject
        self.gpu_stopped[target] = step.index
        worlds = self._worlds_of(target, t)
        for world in worlds:
            self._flush(world, t)
            world.paused.add(f"gpu:{target}")
        return t, target, worlds

    def gpu_hang(self, step: Step) -> None:
        """Nobody notices, by MultiWorld's design: its watchdog thread runs on the CPU and
        keeps every world's heartbeats going."""
        self._gpu_stop(step)

    def gpu_resume(self, step: Step) -> None:
        at, worker = self.env.now, step.event.subject
        if worker not in self.alive or self.gpu_stopped.get(worker) != step.index:
            return
        del self.gpu_stopped[worker]
        self._emit(Resumed, at, do=step.kind.value, target=worker, confirmed=True)
        for world in self._worlds_of(worker, at):
            world.paused.discard(f"gpu:{worker}")
            if world.serving:
                world.next_op = at

    def gpu_error(self, step: Step) -> None:
        """The worker's own next op on each of its worlds fails, so it reports them broken;
        its peers wait on it and hear nothing (it still heartbeats)."""
        t, target, worlds = self._gpu_stop(step)

        def still() -> bool:
            return target in self.alive

        for world in worlds:
            if world.formed:
                peers = failing_peers(step, world.life)
                self._detect(world, peers, step.event, t, None, still)

    def gpu_slow(self, step: Step) -> None:
        """Each op's GPU work (``op_latency_s`` in the model) takes ``factor`` times longer."""
        t = self._fault(step)
        assert isinstance(step.event, GpuSlow)
        target = step.event.target
        self.delays[target] = (step.event.factor - 1) * self.model.op_latency_s
        self.slowed_by[target] = step.index
        for world in self._worlds_of(target, t):
            self._set_period(world, t)

    def gpu_restore(self, step: Step) -> None:
        self.restore(step)

    def join(self, step: Step) -> None:
        t = self.env.now
        self._emit(Scale, t, **step.record())
        worker = step.event.subject
        self.ready_at[worker] = t + self.model.spawn_s
        self.env.process(self._join(step, worker, t))

    def add_world(self, step: Step) -> None:
        t = self.env.now
        self._emit(Scale, t, **step.record())
        for world in self.by_origin.get(step.index, []):
            self.env.process(self._form(world, t))

    def remove_world(self, step: Step) -> None:
        t = self.env.now
        self._emit(Scale, t, **step.record())
        for world in self.by_member.get(step.workers[0], []):
            if world.life.end_event == step.index:
                self._close(world, t)
                for member in world.life.members:
                    left = t + self.interval + self.model.op_latency_s
                    self._emit(Left, left, **world.attrs(), worker=member)

    def _cut_worlds(self, step: Step, t: float) -> list[_World]:
        return [w for name in step.worlds for w in self._live_world(name, t)]

    def _live_world(self, name: str, t: float) -> list[_World]:
        life = self.plan.life_at(name, t)
        return [self.worlds[self.plan.row(life.id)]] if life is not None else []

    def partition(self, step: Step) -> None:
        """Cut worlds stop serving; their members on the cut notice (the watchdog, or at
        once for a resetting cut) unless a dropping cut heals first."""
        t = self._fault(step)
        assert isinstance(step.event, Partition)
        lasts, reset = step.event.lasts(), step.event.mode == "reset"
        heal = t + lasts if lasts is not None and not reset else None
        self.cuts.add(step.index)
        marker = f"cut:{step.index}"
        for world in self._cut_worlds(step, t):
            self._flush(world, t)
            world.paused.add(marker)
            if world.formed:
                peers = failing_peers(step, world.life)
                self._detect(
                    world,
                    peers,
                    step.event,
                    t,
                    heal,
                    lambda: reset or step.index in self.cuts,
                )

    def heal(self, step: Step) -> None:
        """The links work again; cut worlds nobody flagged serve again once TCP's
        retransmissions get through (they back off for about as long as the outage)."""
        at = self.env.now
        self.cuts.discard(step.index)
        self._emit(Resumed, at, do=step.kind.value, target=step.event.subject, confirmed=True)
        outage = at - step.event.at
        for world in self._cut_worlds(step, at):
            world.paused.discard(f"cut:{step.index}")
            if world.serving:
                world.next_op = max(world.next_op, at + self.model.resume_after(outage))

    def _lag(self, world: _World) -> float:
        """How much later than normal its ops complete: a round trip through a degraded
        link (a stream's message also takes the way there: gloo's receiver asks first)."""
        return world.rtt * (1.5 if self.kind == "stream" else 1.0)

    def degrade(self, step: Step) -> None:
        """Ops across the link complete a round trip later, at most one per round trip;
        nothing breaks."""
        t = self._fault(step)
        assert isinstance(step.event, Degrade)
        ev = step.event
        rtt = (ev.delay_ms or 0.0) / 1000
        if ev.rate_mbit:
            rtt += 2 * self.scenario.workload.tensor_bytes * 8 / (ev.rate_mbit * 1e6)
        for name in step.worlds:
            for world in self._live_world(name, t):
                self._flush(world, t)
                world.rtts[step.index] = rtt
                self._set_period(world, t)

    def repair(self, step: Step) -> None:
        at = self.env.now
        self._emit(Resumed, at, do=step.kind.value, target=step.event.subject, confirmed=True)
        for name in step.worlds:
            for world in self._live_world(name, at):
                self._flush(world, at)
                lag = self._lag(world)
                world.rtts.pop(step.index, None)
                world.next_op = max(world.next_op, at + lag)  # what is in flight arrives
                self._set_period(world, at)

    def _join(self, step: Step, worker: str, t: float) -> Process:
        yield self.env.timeout(self.model.spawn_s)
        if self.died_at.get(worker, -1.0) >= t:
            return  # it was told to go before it was even up
        self.alive.add(worker)
        for world in self.by_origin.get(step.index, []):
            self.env.process(self._form(world, self.env.now))

    def _form(self, world: _World, asked: float) -> Process:
        """Form a world once every member's process is up (commands wait for them)."""
        members = world.life.members
        up = max(self.ready_at.get(m, 0.0) for m in members)
        at = max(asked, up) + self.model.init_s
        yield self.env.timeout(max(0.0, at - self.env.now))
        while any(m in self.hung for m in members):  # a stopped process cannot do its part
            back = [self.hung[m] for m in members if m in self.hung]
            if None in back:
                return
            at = max(max(b for b in back if b is not None), self.env.now) + self.model.init_s
            yield self.env.timeout(at - self.env.now)
        if world.closed or any(m not in self.alive for m in members):
            return
        for member in members:
            self._emit(Joined, at, **world.attrs(), worker=member)
        world.formed = True
        world.next_op = at
        self._set_period(world, at)

    # -- run -----------------------------------------------------------------------------

    def _act(self, action: Action) -> Process:
        yield self.env.timeout(action.at)
        dispatch(action, self)

    def run(self) -> History:
        s, m = self.scenario, self.model
        self._emit(
            Run,
            -(m.spawn_s + m.init_s),
            scenario=s.name,
            digest=s.digest(),
            mode=Mode.SIM,
            runtime=s.runtime,
            backend=s.backend,
            seed=self.seed,
            mwsim=_VERSION,
        )
        self.alive = set(self.plan.initial.workers())
        for world in self.worlds:
            if world.life.origin is None:
                for member in world.life.members:
                    self._emit(Joined, -m.init_s, **world.attrs(), worker=member)
                world.formed, world.next_op = True, 0.0
        for action in actions(self.plan.steps):
            self.env.process(self._act(action))
        self.env.run(until=s.duration_s)
        end = s.duration_s
        for world in self.worlds:
            self._end(world, end)
        if self.kind == "serve":
            self.events += self._serve()
        self._emit(Phase, end, name=PhaseName.STOP)
        for worker in sorted(self.alive):
            code = -9 if worker in self.hung else 0
            self._emit(Exit, end + m.leave_s, worker=worker, code=code, expected=True)
        self._emit(
            Hygiene, end + 2 * m.leave_s, ok=True, detail="simulated: no process to leave behind"
        )
        return History(self.events)

    def _serve(self) -> list[Record]:
        """The serve workload's requests over the worlds' serving stretches."""
        carriers = [Carrier(w.life, w.up) for w in self.worlds]
        known: dict[tuple[int, str], float] = {}
        for b in self.events:
            if isinstance(b, Broken):
                life = self.plan.resolve(b.world, b.life, b.t)
                if life is not None:
                    known.setdefault((self.plan.row(life.id), b.worker), b.t)
        # arrivals of their own, so a what-if without one fault sees the same requests
        arrivals = random.Random(f"{self.seed}-serve")
        return serve(self.scenario, carriers, known, dict(self.died_at), self.model, arrivals)


def simulate(
    scenario: Scenario,
    *,
    seed: int | None = None,
    model: RuntimeModel | None = None,
    detail: str = "auto",
) -> History:
    """Predict the History of ``scenario`` on a correct runtime.

    ``seed`` (default: the scenario's) fixes every random choice, so the same scenario and
    seed give a byte-identical history. ``detail`` is ``ops`` (one event per op),
    ``spans`` (``ops`` events covering runs of ops) or ``auto`` (spans for big runs).
    """
    return Simulation(scenario, seed=seed, model=model, detail=detail).run()
