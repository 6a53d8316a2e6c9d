"""The model of the ``serve`` workload: requests through a simulated deployment.

The world-level model (``engine``) says when each world can carry a message (its serving
stretches) and when each member learns it is broken. Here requests arrive at the
frontend (the leader) open-loop, and each goes through the topology: in a fan-in to one
replica and back, in a pipeline through one replica of each stage and back to the
leader, each hop over the world between two workers. Each replica serves one request at
a time, first come first served (its queue by Lindley's recursion: exact here, since a
stage's service time is known when a request arrives); routing picks among next-stage
replicas whose world the sender does not know to be broken (round robin, or least
outstanding); a hop that fails with the runtime's failure signal, or outlives its share
of the timeout, is retried avoiding what failed it, up to ``retries`` times; a request
is answered once, or failed with its reason at ``timeout_ms``. The records are the ones
a real run writes (``Admitted``, ``Answered``, ``Unserved``, and an ``Op`` per hop at its
receiver), so the same checks judge both.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import simpy

from mwsim.history import Admitted, Answered, Op, Record, Unserved
from mwsim.membership import WorldId, WorldLife
from mwsim.scenario import FRONTEND, Scenario, Workload, route_choice
from mwsim.timing import RuntimeModel

#: One floating-point operation per this many seconds in a model slice (a 2-core CPU's
#: order of magnitude; calibration refines it).
FLOP_S = 1e-9

Process = Generator[simpy.Event, Any, None]
Hop = Generator[simpy.Event, Any, str | None]  # None: carried; else why not


@dataclass
class Carrier:
    """When one world life can carry a message: its serving stretches (from the engine)."""

    life: WorldLife
    up: list[tuple[float, float]] = field(default_factory=list)

    def up_at(self, t: float) -> tuple[float, float] | None:
        return next(((a, b) for a, b in self.up if a <= t < b), None)

    def next_up(self, t: float) -> float | None:
        """When it can carry a message again after ``t`` (None: never)."""
        return next((a for a, _ in self.up if a >= t), None)


def arrivals(workload: Workload, duration_s: float, rng: random.Random) -> Iterator[float]:
    """Arrival instants in [0, duration) (``Workload.gaps``)."""
    t = 0.0
    for gap in workload.gaps(rng):
        t += gap
        if t >= duration_s:
            return
        yield t


def service_s(workload: Workload, model: RuntimeModel) -> float:
    """How long one stage takes on one request: the crossing of a world, plus its slice of
    the model (``layers`` matrix products of ``width``, twice the multiply-adds)."""
    compute = 0.0
    if workload.model is not None:
        compute = workload.model.layers * 2 * workload.model.width**2 * FLOP_S
    return model.hop_s + compute


class Serving:
    """One simulated serving run over the engine's world stretches."""

    def __init__(
        self,
        scenario: Scenario,
        carriers: list[Carrier],
        known_broken: dict[tuple[int, str], float],
        dead_at: dict[str, float],
        model: RuntimeModel,
        rng: random.Random,
    ) -> None:
        self.scenario, self.plan = scenario, scenario.plan
        self.workload = scenario.workload
        self.model, self.rng = model, rng
        self.carriers = carriers
        self.known_broken = known_broken  # (plan row, member) -> when it was reported
        self.dead_at = dead_at
        self.env = simpy.Environment()
        self.free_at: dict[str, float] = {}  # when each replica's queue empties
        self.outstanding: dict[str, int] = defaultdict(int)
        self.turn: dict[tuple[str, int], int] = defaultdict(int)
        self.seq: dict[tuple[int, str], int] = defaultdict(int)
        self.records: list[Record] = []
        self.hop_timeout = self.workload.timeout_s / (self.workload.retries + 1)
        self.service = service_s(self.workload, model)
        self.edges = self._edges()
        self.cache: dict[str, tuple[float, float, list[tuple[str, Carrier]]]] = {}
        self.worlds_of: dict[str, list[Carrier]] = defaultdict(list)
        for carrier in carriers:
            for member in carrier.life.members:
                self.worlds_of[member].append(carrier)

    # -- the topology as requests see it ------------------------------------------------

    def _edges(self) -> dict[str, list[tuple[str, Carrier, int]]]:
        """``Scenario.request_edges`` with each life's carrier and plan row."""
        carriers = {c.life.id: c for c in self.carriers}
        return {
            sender: [(r, carriers[life.id], self.plan.row(life.id)) for r, life in options]
            for sender, options in self.scenario.request_edges().items()
        }

    def _options(self, sender: str, t: float) -> list[tuple[str, Carrier]]:
        """Where a request at ``sender`` may go at ``t``: worlds alive that it does not
        know to be broken, in receiver order; cached until the next change of either."""
        cached = self.cache.get(sender)
        if cached is not None and cached[0] <= t < cached[1]:
            return cached[2]
        since, until, options = -math.inf, math.inf, []
        for receiver, carrier, row in self.edges.get(sender, []):
            life = carrier.life
            known = self.known_broken.get((row, sender))
            for edge in (life.start, life.end, known):
                if edge is not None:
                    since, until = (
                        (max(since, edge), until) if edge <= t else (since, min(until, edge))
                    )
            if life.alive_at(t) and (known is None or known > t):
                options.append((receiver, carrier))
        self.cache[sender] = (since, until, options)
        return options

    def _route(
        self, sender: str, stage: int, t: float, avoid: set[str | WorldId]
    ) -> tuple[str, Carrier] | None:
        options = self._options(sender, t)  # the frontend is never a first stage
        if avoid:
            options = [o for o in options if o[0] not in avoid and o[1].life.id not in avoid]
        if not options:
            return None
        key = (sender, stage)
        self.turn[key] += 1
        route = self.workload.route
        return route_choice(options, self.turn[key] - 1, route, lambda o: self.outstanding[o[0]])

    # -- a request -----------------------------------------------------------------------

    def _hop(self, carrier: Carrier, receiver: str, deadline: float) -> Hop:
        """Carry a request to ``receiver`` and have it served there (the frontend only
        receives the answer); the process's value is None when it got through, else why
        not (when that became known). Outstanding at the receiver from send to reply."""
        self.outstanding[receiver] += 1
        try:
            why = yield from self._carry(carrier, receiver, deadline)
        finally:
            self.outstanding[receiver] -= 1
        return why

    def _carry(self, carrier: Carrier, receiver: str, deadline: float) -> Hop:
        now = self.env.now
        if self.dead_at.get(receiver, math.inf) <= now or not carrier.life.alive_at(now):
            yield self.env.timeout(self.model.fail_s)  # the runtime raises at once
            return "failure signal"
        if carrier.up_at(now) is None:  # stopped or cut off: wait for it, or the deadline
            back = carrier.next_up(now)
            if back is None or back >= deadline:
                yield self.env.timeout(max(0.0, deadline - now))
                return "hop timeout"
            yield self.env.timeout(back - now)
        began = self.env.now
        if receiver == FRONTEND:
            yield self.env.timeout(self.model.hop_s)
        else:
            # one request at a time, first come first served: it starts when the ones
            # before it are done (Lindley's recursion), or gives up at its deadline
            began = max(self.env.now, self.free_at.get(receiver, 0.0))
            if began >= deadline:
                yield self.env.timeout(max(0.0, deadline - self.env.now))
                return "hop timeout"
            self.free_at[receiver] = began + self.service
            yield self.env.timeout(began + self.service - self.env.now)
        done = self.env.now
        if self.dead_at.get(receiver, math.inf) <= done or not carrier.life.alive_at(done):
            return "failure signal"
        stretch = carrier.up_at(began)
        if stretch is None or stretch[1] < done:  # stopped or cut off on the way
            return "hop timeout"
        return None

    def _request(self, rid: int) -> Process:
        """One request: attempts from the frontend until one is answered, the retries are
        spent or the timeout passes (a failed attempt is retried avoiding what failed
        it: a replica that died or led nowhere, or a world that did not carry it)."""
        admitted = self.env.now
        timeout_at = admitted + self.workload.timeout_s
        self.records.append(Admitted.of(round(admitted, 6), rid=rid, worker=FRONTEND))
        tries = 0
        avoid: set[str | WorldId] = set()
        while True:
            if self.env.now >= timeout_at:
                return self._unserved(rid, timeout_at, "timeout", tries)
            tries += 1
            sender, stage = FRONTEND, 0
            path: list[str] = []
            why: str | None = None
            failed: str | WorldId = sender
            while why is None:
                route = self._route(sender, stage, self.env.now, avoid)
                if route is None:
                    if stage == 0:
                        return self._unserved(rid, self.env.now, "no replica to route to", tries)
                    why, failed = "no next replica", sender
                    break
                receiver, carrier = route
                deadline = min(self.env.now + self.hop_timeout, timeout_at)
                why = yield from self._hop(carrier, receiver, deadline)
                if why is not None:
                    failed = self._culprit(sender, receiver, carrier)
                    break
                self._op(carrier, receiver)
                if receiver == FRONTEND:
                    return self._answer(rid, admitted, tries, path)
                path.append(receiver)
                sender, stage = receiver, stage + 1
            if tries > self.workload.retries:
                at = min(self.env.now, timeout_at)
                return self._unserved(rid, at, f"{why}; no retry left", tries)
            avoid.add(failed)

    def _culprit(self, sender: str, receiver: str, carrier: Carrier) -> str | WorldId:
        """What a failed hop's retry avoids: the replica that died or stopped (none of its
        worlds carries; a sender on its way back), or else the world that did not carry
        it."""
        if receiver != FRONTEND and self._down(receiver):
            return receiver
        if receiver == FRONTEND or self._down(sender):
            return sender
        return carrier.life.id

    def _down(self, worker: str) -> bool:
        now = self.env.now
        if self.dead_at.get(worker, math.inf) <= now:
            return True
        return all(c.up_at(now) is None for c in self.worlds_of.get(worker, []))

    def _answer(self, rid: int, admitted: float, tries: int, path: list[str]) -> None:
        t = self.env.now
        self.records.append(
            Answered.of(
                round(t, 6),
                rid=rid,
                worker=FRONTEND,
                right=True,
                latency_s=round(t - admitted, 6),
                tries=tries,
                path=tuple(path),
            )
        )

    def _unserved(self, rid: int, t: float, reason: str, tries: int) -> None:
        self.records.append(
            Unserved.of(round(t, 6), rid=rid, worker=FRONTEND, reason=reason, tries=tries)
        )

    def _op(self, carrier: Carrier, receiver: str) -> None:
        """A hop carried: an op of the world, recorded by its receiver."""
        key = (self.plan.row(carrier.life.id), receiver)
        seq = self.seq[key]
        self.seq[key] += 1
        attrs = carrier.life.id.attrs()
        self.records.append(
            Op.of(round(self.env.now, 6), **attrs, worker=receiver, seq=seq, ok=True)
        )

    def _arrive(self, times: Iterator[float]) -> Process:
        for rid, at in enumerate(times):
            yield self.env.timeout(at - self.env.now)
            self.env.process(self._request(rid))

    def run(self) -> list[Record]:
        times = arrivals(self.workload, self.scenario.duration_s, self.rng)
        self.env.process(self._arrive(times))
        self.env.run(until=self.scenario.duration_s)
        return self.records


def serve(
    scenario: Scenario,
    carriers: list[Carrier],
    known_broken: dict[tuple[int, str], float],
    dead_at: dict[str, float],
    model: RuntimeModel,
    rng: random.Random,
) -> list[Record]:
    """The records of the serve workload over the engine's world stretches."""
    return Serving(scenario, carriers, known_broken, dead_at, model, rng).run()
