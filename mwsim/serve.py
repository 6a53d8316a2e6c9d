"""The ``serve`` workload in a real replay: requests through the deployment.

The leader is the frontend: requests arrive there open-loop (the same arrival process as
the model's, ``sim.serving.arrivals``), and each goes to a replica of the first stage,
through one replica of each stage in turn, and back to the leader; in a fan-in the one
stage is the workers, and the answer comes back over the same world. A sender picks the
next replica among those whose world it does not know to be broken (round robin, or
least outstanding), and queues the request on that world's *lane*: one task per world
that carries its requests one at a time, so a stuck world stalls only its own lane.

Each request is a ``float64`` tensor: a header (``rid``, attempt, input, stages done,
flags, the replicas it went through) and a body that each stage transforms: with a
model, ``layers`` seeded matrices of ``width`` and a ReLU (the same weights for every
replica of a stage); without, it adds the stage's number. The frontend knows the right
output of each of its ``INPUTS`` inputs, so it checks every answer.

The frontend alone retries: an attempt that outlives its share of the timeout
(``timeout_ms / (retries + 1)``) or whose lane fails with the runtime's failure signal
is tried again on another replica, up to ``retries`` times; a late answer of an older
attempt is ignored, so a request is answered at most once. It records ``request``,
``answer`` and ``unserved``; every worker records an ``op`` for each request it receives
on a world, so the world-level properties keep judging the worlds underneath.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from mwsim.history import Admitted, Answered, Unserved
from mwsim.scenario import FRONTEND, arrival_gaps, route_choice

#: Header slots of a request tensor.
RID, ATTEMPT, INPUT, HOPS, FLAGS = range(5)
PATH = 5  # the replicas it went through, one slot per stage (their ordinals)
MAX_STAGES = 8
HEADER = PATH + MAX_STAGES
STOP = 1.0  # flag: the sender ends this world gracefully (remove_world)
#: The frontend's inputs: each request carries one of them, round robin.
INPUTS = 16
#: How often the frontend looks for attempts past their deadline.
WATCH_S = 0.01


@dataclass(frozen=True)
class Spec:
    """What a worker needs of the serve workload (from the scenario, via the boot)."""

    rate_per_s: float
    arrivals: str
    cv: float
    request_bytes: int
    route: str
    retries: int
    timeout_s: float
    layers: int | None
    width: int | None
    stages: int
    workers: tuple[str, ...]  # every worker name of the run: the path slots' ordinals
    seed: int

    @classmethod
    def of(cls, workload: dict[str, Any]) -> Spec:
        model = workload.get("model") or {}
        return cls(
            rate_per_s=float(workload["rate_per_s"]),
            arrivals=str(workload["arrivals"]),
            cv=float(workload.get("cv", 3.0)),  # only bursty arrivals have one
            request_bytes=int(workload["request_bytes"]),
            route=str(workload["route"]),
            retries=int(workload["retries"]),
            timeout_s=float(workload["timeout_ms"]) / 1000,
            layers=model.get("layers"),
            width=model.get("width"),
            stages=int(workload.get("stages", 1)),
            workers=tuple(workload.get("workers", ())),
            seed=int(workload.get("seed") or 0),
        )

    @property
    def body(self) -> int:
        return self.width if self.width else max(1, self.request_bytes // 8 - HEADER)


class Stages:
    """What each stage computes, and the right output of each input after every stage."""

    def __init__(self, spec: Spec, device: str) -> None:
        self.spec, self.device = spec, device
        self.weights: list[list[torch.Tensor]] = []
        if spec.layers and spec.width:
            for stage in range(spec.stages):
                gen = torch.Generator().manual_seed(spec.seed * 1009 + stage)
                scale = 1.0 / math.sqrt(spec.width)
                self.weights.append(
                    [
                        (
                            torch.randn(spec.width, spec.width, generator=gen, dtype=torch.float64)
                            * scale
                        ).to(device)
                        for _ in range(spec.layers)
                    ]
                )
        gen = torch.Generator().manual_seed(spec.seed * 7 + 1)
        self.inputs = [
            torch.rand(spec.body, generator=gen, dtype=torch.float64).to(device)
            for _ in range(INPUTS)
        ]
        self.answers = [self.through(x) for x in self.inputs]

    def apply(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        if not self.weights:
            return x + (stage + 1)
        for w in self.weights[min(stage, len(self.weights) - 1)]:
            x = torch.relu(w @ x)
        return x

    def through(self, x: torch.Tensor) -> torch.Tensor:
        for stage in range(self.spec.stages):
            x = self.apply(stage, x)
        return x

    def right(self, index: int, got: torch.Tensor) -> bool:
        want = self.answers[index % INPUTS]
        return bool(torch.allclose(got, want, rtol=1e-9, atol=1e-9))


# -- lanes: one world's requests, one at a time --------------------------------------------


@dataclass
class Job:
    """One attempt of a request, queued on a lane."""

    tensor: torch.Tensor
    rid: int
    attempt: int


@dataclass
class Lane:
    """One outgoing world of a worker: where it sends requests next, in order."""

    world: str
    life: int
    peer: str
    healthy: Callable[[], bool]
    queue: deque[Job] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    busy: bool = False  # a job is in its send (or, in a fan-in, its round trip)
    stopped: bool = False

    @property
    def outstanding(self) -> int:
        return len(self.queue) + self.busy

    def put(self, job: Job) -> None:
        self.queue.append(job)
        self.ready.set()

    async def take(self, halted: Callable[[], bool]) -> Job | None:
        """The next job (None once ``halted``); waits in short steps to notice a halt."""
        while not self.queue:
            if halted():
                return None
            self.ready.clear()
            with contextlib.suppress(TimeoutError):  # an event, not a communicator call
                await asyncio.wait_for(self.ready.wait(), 0.1)
        return self.queue.popleft()


class Router:
    """A worker's lanes, and the choice among them."""

    def __init__(self, route: str) -> None:
        self.route = route
        self.lanes: list[Lane] = []
        self.turn = 0

    def add(self, lane: Lane) -> None:
        self.lanes.append(lane)

    def choose(self, avoid: set[str] = frozenset()) -> Lane | None:  # type: ignore[assignment]
        options = [
            lane
            for lane in self.lanes
            if not lane.stopped and lane.healthy() and lane.peer not in avoid
        ]
        if not options:
            return None
        options.sort(key=lambda lane: lane.peer)
        self.turn += 1
        return route_choice(options, self.turn - 1, self.route, lambda lane: lane.outstanding)


# -- the frontend ---------------------------------------------------------------------------


@dataclass
class Pending:
    """A request the frontend admitted and has not ended yet."""

    rid: int
    admitted: float  # monotonic
    input: int
    tries: int = 0
    attempt: int = 0
    deadline: float = 0.0  # of the current attempt
    avoid: set[str] = field(default_factory=set)
    lane: Lane | None = None


Emit = Callable[..., None]  # (record class, **fields): the agent's emit


class Frontend:
    """The leader's side: admits requests, routes them, retries, checks the answers."""

    def __init__(self, spec: Spec, stages: Stages, router: Router, emit: Emit) -> None:
        self.spec, self.stages, self.router, self.emit = spec, stages, router, emit
        self.pending: dict[int, Pending] = {}
        self.rng = random.Random(spec.seed)
        self.attempt_s = spec.timeout_s / (spec.retries + 1)
        self.stopped = False
        #: (deadline, rid, attempt) of every attempt sent: the watcher looks only at the
        #: ones due (a backlog of thousands would cost it a scan every 10 ms)
        self.due: list[tuple[float, int, int]] = []

    def names(self, tensor: torch.Tensor) -> tuple[str, ...]:
        hops = int(tensor[HOPS])
        ordinals = tensor[PATH : PATH + min(hops, MAX_STAGES)].tolist()
        return tuple(self.spec.workers[int(i)] for i in ordinals if 0 <= i < len(self.spec.workers))

    async def arrive(self, until: Callable[[], bool]) -> None:
        """Admit requests open-loop until ``until()`` (the run stops)."""
        gaps = arrival_gaps(self.spec.rate_per_s, self.spec.arrivals, self.spec.cv, self.rng)
        next_at = time.monotonic()
        rid = 0
        while not until():
            next_at += next(gaps)
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if until():
                return
            self.admit(rid)
            rid += 1

    def admit(self, rid: int) -> None:
        request = Pending(rid, time.monotonic(), rid % INPUTS)
        self.pending[rid] = request
        self.emit(Admitted, rid=rid)
        self.dispatch(request, "")

    def dispatch(self, request: Pending, why: str) -> None:
        """Send a new attempt of ``request`` (or end it: no replica, no retry, no time)."""
        now = time.monotonic()
        timeout_at = request.admitted + self.spec.timeout_s
        if now >= timeout_at:
            return self.unserved(request, "timeout")
        if request.tries > self.spec.retries:
            return self.unserved(request, f"{why}; no retry left")
        lane = self.router.choose(request.avoid)
        if lane is None:
            lane = self.router.choose()  # every replica failed it once: any healthy one
        if lane is None:
            return self.unserved(request, "no replica to route to")
        request.tries += 1
        request.attempt += 1
        request.deadline = min(now + self.attempt_s, timeout_at)
        request.lane = lane
        heapq.heappush(self.due, (request.deadline, request.rid, request.attempt))
        tensor = torch.zeros(
            HEADER + self.spec.body, dtype=torch.float64, device=self.stages.device
        )
        tensor[RID], tensor[ATTEMPT], tensor[INPUT] = request.rid, request.attempt, request.input
        tensor[HEADER:] = self.stages.inputs[request.input]
        lane.put(Job(tensor, request.rid, request.attempt))
        return None

    def failed(self, job: Job, peer: str, why: str) -> None:
        """An attempt's lane failed (its world broke): try again elsewhere at once."""
        request = self.pending.get(job.rid)
        if request is not None and request.attempt == job.attempt:
            request.avoid.add(peer)
            self.dispatch(request, why)

    def stale(self, job: Job) -> bool:
        request = self.pending.get(job.rid)
        return request is None or request.attempt != job.attempt

    def answered(self, tensor: torch.Tensor) -> None:
        """An answer came back: the first of the current attempt ends its request."""
        rid, attempt = int(tensor[RID]), int(tensor[ATTEMPT])
        request = self.pending.get(rid)
        if request is None or request.attempt != attempt:
            return  # a late answer of an older attempt: already retried or ended
        del self.pending[rid]
        now = time.monotonic()
        right = int(tensor[HOPS]) == self.spec.stages and self.stages.right(
            request.input, tensor[HEADER:]
        )
        self.emit(
            Answered,
            rid=rid,
            right=right,
            latency_s=round(now - request.admitted, 6),
            tries=request.tries,
            path=self.names(tensor),
        )

    def unserved(self, request: Pending, reason: str) -> None:
        self.pending.pop(request.rid, None)
        self.emit(Unserved, rid=request.rid, reason=reason[:200], tries=request.tries)

    async def watch(self, until: Callable[[], bool]) -> None:
        """Retry attempts past their deadline (their lane is stuck or slow)."""
        while not until():
            await asyncio.sleep(WATCH_S)
            now = time.monotonic()
            while self.due and self.due[0][0] <= now:
                _, rid, attempt = heapq.heappop(self.due)
                request = self.pending.get(rid)
                if request is None or request.attempt != attempt:
                    continue  # answered, failed or retried since
                if request.lane is not None:
                    request.avoid.add(request.lane.peer)
                self.dispatch(request, "attempt timeout")


# -- what a worker does on one world -------------------------------------------------------

Send = Callable[[torch.Tensor, int], Awaitable[None]]
Recv = Callable[[torch.Tensor, int], Awaitable[None]]
#: ``(seq, ok, peer rank)``: an op of this world, recorded by the agent
Record = Callable[[int, bool, "int | None", float], None]


class Link(Protocol):
    rank: int
    size: int

    async def send(self, tensor: torch.Tensor, dst: int) -> None: ...
    async def recv(self, tensor: torch.Tensor, src: int) -> None: ...


@dataclass
class World:
    """One world at this worker, as the node sees it."""

    name: str
    life: int
    rank: int
    members: list[str]
    healthy: Callable[[], bool]  # not known broken, not removed, its task running


class Node:
    """This worker's part in serving: its lanes (the worlds it sends on), what its stage
    computes, and (at the leader) the frontend."""

    def __init__(
        self,
        worker: str,
        spec: Spec,
        device: str,
        pipeline: bool,
        emit: Emit,
        slow: Callable[[], Awaitable[None]],
    ) -> None:
        self.worker, self.spec, self.device, self.pipeline = worker, spec, device, pipeline
        self.slow = slow
        self.stages = Stages(spec, device)
        self.router = Router(spec.route)
        self.frontend = (
            Frontend(spec, self.stages, self.router, emit) if worker == FRONTEND else None
        )
        self.size = HEADER + spec.body

    @classmethod
    def of(cls, boot: Any, emit: Emit, slow: Callable[[], Awaitable[None]]) -> Node:
        """The node of an agent (its ``Boot``: worker, device, the workload's keys)."""
        spec = boot.workload
        pipeline = bool(spec.get("pipeline"))
        return cls(boot.worker, Spec.of(spec), boot.device, pipeline, emit, slow)

    def start(self, spawn: Callable[[Any], Any], stopped: Callable[[], bool]) -> None:
        """At the leader: admit requests, and retry late attempts, until ``stopped()``."""
        if self.frontend is not None:
            spawn(self.frontend.arrive(stopped))
            spawn(self.frontend.watch(stopped))

    def role_of(self, run: Any) -> Callable[..., Awaitable[None]]:
        """The role for an agent's world (its ``WorldRun``), healthy while it is neither
        reported broken nor removed and its task runs."""

        def healthy() -> bool:
            return not (run.reported or run.removed or run.done.is_set())

        return self.role(World(run.world, run.life, run.rank, list(run.members), healthy))

    def role(self, world: World) -> Callable[..., Awaitable[None]]:
        """The coroutine function the agent runs for ``world`` (the workloads' signature:
        ``(link, payload, pace, ctl, record)``)."""
        members, me = world.members, world.rank
        if self.pipeline:  # worlds carry one way: from rank 1 (sender) to rank 0
            if me == 1:
                return self._lane(world, dst=0, round_trip=False)
            return self._receiver(world, src=1)
        if self.worker == FRONTEND:  # a fan-in: the leader's round trips to a replica
            peer = next(r for r, m in enumerate(members) if m != FRONTEND)
            return self._lane(world, dst=peer, round_trip=True)
        return self._replier(world, src=members.index(FRONTEND))

    def _lane(self, world: World, dst: int, round_trip: bool) -> Callable[..., Awaitable[None]]:
        lane = Lane(world.name, world.life, world.members[dst], world.healthy)
        self.router.add(lane)
        front = self.frontend

        async def run(link: Link, _payload: Any, _pace: Any, ctl: Any, record: Record) -> None:
            seq = 0
            try:
                while True:
                    job = await lane.take(lambda: ctl.halt or ctl.stop)
                    if job is None:
                        if ctl.stop and not ctl.halt:  # tell the peer this world ends
                            marker = torch.zeros(self.size, dtype=torch.float64, device=self.device)
                            marker[FLAGS] = STOP
                            await link.send(marker, dst)
                        return
                    if front is not None and front.stale(job):
                        continue
                    lane.busy = True
                    try:
                        await link.send(job.tensor, dst)
                        if round_trip:
                            buf = torch.zeros_like(job.tensor)
                            await link.recv(buf, dst)
                            record(seq, int(buf[RID]) == job.rid, dst, 0.0)
                            seq += 1
                            if front is not None:
                                front.answered(buf)
                    except Exception:
                        self._lost(job, lane)
                        raise
                    finally:
                        lane.busy = False
            finally:
                lane.stopped = True
                for job in lane.queue:  # what was queued here goes elsewhere
                    self._lost(job, lane)
                lane.queue.clear()

        return run

    def _lost(self, job: Job, lane: Lane) -> None:
        """A request this worker could not send on ``lane`` (its world broke): the
        frontend tries another attempt; a stage sends it to another replica of the next
        stage (none left: dropped, and the frontend's attempt deadline retries it)."""
        if self.frontend is not None:
            self.frontend.failed(job, lane.peer, "failure signal")
            return
        other = self.router.choose({lane.peer})
        if other is not None:
            other.put(job)

    def _compute(self, buf: torch.Tensor) -> torch.Tensor:
        """This stage's work on a request: its slice of the model (or the echo), and its
        name on the path."""
        hops = int(buf[HOPS])
        out = buf.clone()
        out[HEADER:] = self.stages.apply(hops, buf[HEADER:])
        if hops < MAX_STAGES and self.worker in self.spec.workers:
            out[PATH + hops] = self.spec.workers.index(self.worker)
        out[HOPS] = hops + 1
        return out

    def _replier(self, world: World, src: int) -> Callable[..., Awaitable[None]]:
        """A fan-in replica: take a request, compute, answer on the same world."""

        async def run(link: Link, _payload: Any, _pace: Any, ctl: Any, record: Record) -> None:
            seq = 0
            buf = torch.zeros(self.size, dtype=torch.float64, device=self.device)
            while not ctl.halt:
                await link.recv(buf, src)
                if float(buf[FLAGS]) == STOP:
                    return
                record(seq, True, src, 0.0)
                seq += 1
                await self.slow()
                await link.send(self._compute(buf), src)

        return run

    def _receiver(self, world: World, src: int) -> Callable[..., Awaitable[None]]:
        """A pipeline world's receiving end: the frontend checks the answer; a stage
        computes and sends the request on to a replica of the next stage (none left:
        dropped, the frontend's attempt deadline retries it)."""

        async def run(link: Link, _payload: Any, _pace: Any, ctl: Any, record: Record) -> None:
            seq = 0
            while not ctl.halt:
                buf = torch.zeros(self.size, dtype=torch.float64, device=self.device)
                await link.recv(buf, src)
                if float(buf[FLAGS]) == STOP:
                    return
                record(seq, True, src, 0.0)
                seq += 1
                if self.frontend is not None:
                    self.frontend.answered(buf)
                    continue
                await self.slow()
                out = self._compute(buf)
                lane = self.router.choose()
                if lane is not None:
                    lane.put(Job(out, int(buf[RID]), int(buf[ATTEMPT])))

        return run
