"""The replay controller: one scenario on real agent processes, recorded as a History.

It brings the deployment up (one agent per worker; rank 0 of each world picks a free
port at run time), starts the workload everywhere at one instant ``t0``, plays the
plan's actions at their wall-clock times through the same dispatch as the simulator
(:mod:`mwsim.playback`), and tears everything down whatever ends the run. Its parts each
do one job: ``Placement`` (where agents live: this machine or Ray nodes), ``AgentPool``
(the processes), ``Formation`` (forming worlds), ``BringUp`` (bringing the deployment up,
or why not), ``Reports`` (what agents say), ``Injector`` (the executor's verbs on real
processes), ``Schedule`` and ``Confirmations`` (when to act, and whether it took),
``Loop`` (waiting), ``Recorder`` (the history), ``SignalTrap`` (Ctrl-C). Every wait has a
deadline, so a hung system under test ends as a recorded history.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from mwsim import runtimes
from mwsim.errors import BringUpFailed, Inconclusive, ZygoteError
from mwsim.events import parse_event
from mwsim.history import (
    Cause,
    Hygiene,
    Lag,
    Mode,
    Phase,
    PhaseName,
    Run,
    Source,
    Stage,
)
from mwsim.hosts.netfaults import unavailable_for
from mwsim.membership import Plan, Step
from mwsim.playback import actions, dispatch
from mwsim.replay import protocol as wire
from mwsim.replay.bringup import BringUp
from mwsim.replay.injector import Injector
from mwsim.replay.lag import LAG_S
from mwsim.replay.loop import Loop, Progress
from mwsim.replay.placement import CLUSTER_ENV, placement_for
from mwsim.replay.pool import AgentPool
from mwsim.replay.processes import Leftovers
from mwsim.replay.recorder import Clock, Recorder
from mwsim.replay.reports import Reports
from mwsim.replay.schedule import Confirmations, Schedule
from mwsim.replay.signals import SignalTrap, Waker
from mwsim.replay.worlds import Formation
from mwsim.replay.zygote import Zygote
from mwsim.scenario import PipelineSpec, Scenario
from mwsim.timing import model_for, progress_window, sized

STOP_GRACE_S = 2.0
EXIT_GRACE_S = 5.0


class RunStatus(StrEnum):
    """How a real run ended."""

    COMPLETED = "completed"
    BRINGUP_FAILED = "bringup_failed"
    INTERRUPTED = "interrupted"


@dataclass
class RealRun:
    """The outcome of one real replay."""

    history: Path
    logs: Path
    status: RunStatus
    reason: str
    leftovers: Leftovers
    wall_s: float
    cause: str | None = None  # a failed bring-up: whose doing (``mwsim.history.Cause``)


def workload_of(scenario: Scenario) -> dict[str, Any]:
    """What an agent needs of the workload: its keys, and for ``serve`` the deployment's
    shape (stages, every worker's name, the seed of its inputs and weights)."""
    spec = scenario.workload.model_dump()
    if scenario.workload.kind == "serve":
        topology = scenario.topology
        pipeline = isinstance(topology, PipelineSpec)
        spec.update(
            pipeline=pipeline,
            stages=len(topology.replica_counts()) if isinstance(topology, PipelineSpec) else 1,
            workers=sorted({w.name for w in scenario.plan.workers}),
            seed=scenario.seed or 0,
        )
    return spec


def devices(plan: Plan, backend: str, per_host: bool = False) -> dict[str, str]:
    """Device per worker name: ``cpu`` for gloo; a distinct ``cuda:N`` per GPU slot for nccl
    (``per_host``: numbered on each host, as on cluster nodes; else across this machine)."""
    names = {w.name for w in plan.workers}
    if backend != "nccl":
        return dict.fromkeys(names, "cpu")
    offsets, total = {}, 0
    for host in plan.initial.hosts():
        offsets[host] = total
        total += 0 if per_host else plan.initial.gpus_of(host)
    found, used = {}, dict.fromkeys(offsets, 0)
    for life in plan.workers:
        local = life.gpu if life.gpu is not None else used[life.host]
        used[life.host] = max(used[life.host], local + 1)
        found[life.name] = f"cuda:{offsets[life.host] + local}"
    return found


def runtime_class(
    runtime: str, backend: str, needed_devices: int, scenario: Scenario | None = None
) -> type[runtimes.Runtime]:
    """The runtime's adapter, if it can run here and has every operation ``scenario``
    needs (``Inconclusive`` why not)."""
    cls = runtimes.load(runtime)
    reason = cls.unavailable(backend, needed_devices)
    if reason is None and scenario is not None:
        kinds = {step.kind for step in scenario.plan.steps}
        reason = runtimes.missing_operations(cls, scenario.workload.kind, kinds)
    if reason:
        raise Inconclusive(f"runtime {runtime}: {reason}")
    return cls


def versions(cls: type[runtimes.Runtime]) -> dict[str, Any]:
    """What the history's ``run`` line records for reproducing a run: mwsim's version,
    the runtime's package (version, where it is loaded from) and torch's version."""
    out: dict[str, Any] = {}
    for name in ("mwsim", "torch"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    out["runtime_package"] = cls.describe()
    return out


class Controller:
    """Runs one scenario on real processes; ``run()`` once (or ``start``, ``advance``,
    ``finish``), then it is spent. ``Inconclusive`` before anything starts if the runtime
    cannot run here."""

    def __init__(
        self,
        scenario: Scenario,
        out_dir: str | Path,
        *,
        runtime: str | None = None,
        backend: str | None = None,
        bringup_timeout_s: float = 90.0,
        progress: Progress | None = None,
        zygote: Zygote | None = None,
        network: str = "auto",
        cluster: str | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.scenario = scenario
        self.runtime = runtime or scenario.runtime
        self.backend = backend or scenario.backend
        cluster = cluster if cluster is not None else os.environ.get(CLUSTER_ENV) or None
        self.devices = devices(scenario.plan, self.backend, per_host=cluster is not None)
        # the checks and the model expect this poll period for this size (timing.sized)
        self.model = sized(model_for(self.runtime), scenario)
        self.watch_s = self.model.poll_s  # how often agents poll the broken-world query
        needed = len(set(self.devices.values())) if self.backend == "nccl" else 0
        # on a cluster the GPUs are the nodes' (placement checks them); the runtime is here too
        here = (self.backend, needed) if cluster is None else ("gloo", 0)
        self.runtime_class = runtime_class(self.runtime, *here, scenario)
        self.network = placement_for(
            scenario.plan,
            self.backend,
            network=network,
            cluster=cluster,
            zygote=zygote,
            image=self.runtime_class.image(),
        )
        for step in scenario.plan.steps:  # what this machine lacks, wherever agents run
            reason = unavailable_for(step.event)
            if reason is not None:
                raise Inconclusive(f"events[{step.index}]: {reason}")
        self.bringup_timeout_s = bringup_timeout_s
        self.out = Path(out_dir)
        self.logs = self.out / "logs"
        self.clock = clock
        self.waker = Waker()
        self.recorder = Recorder(self.out / "history.jsonl", clock)
        self.pool = AgentPool(self.logs, self.waker, {}, lambda _: None, self.network.key)
        self.formation = Formation(self.pool)
        self.schedule = Schedule()
        self.scheduled = 0  # steps scheduled so far (their order in the schedule)
        self.confirmations = Confirmations(clock, self.recorder.record)
        self.injector = Injector(
            scenario.plan,
            self.pool,
            self.formation,
            self.recorder,
            self.confirmations,
            self._boot,
            clock,
            self.network.faults,
        )
        self.trap = SignalTrap(self.waker)
        duration = lambda: self.scenario.duration_s  # noqa: E731 (the fuzzer grows it)
        self.loop = Loop(
            self.pool, self.recorder, self.confirmations, self.trap, clock, progress, duration
        )
        self.rendezvous: int | None = None
        self.bringup = BringUp(
            scenario.plan,
            self.pool,
            self.formation,
            self.recorder,
            self._boot,
            lambda until: self.loop.pump(until),
            clock,
            self.model,
            progress_window(self.model, scenario),
            bringup_timeout_s,
            self.trap.check,
        )
        reports = Reports(
            lambda: self.plan, self.network, self.recorder, self.formation, self.bringup
        )
        self.pool.handlers.update(reports.handlers)
        self.pool.on_exit = reports.exited
        self.started = 0.0

    @property
    def plan(self) -> Plan:
        return self.injector.plan

    def _boot(self, worker: str, at: float) -> wire.Boot:
        """How the incarnation of ``worker`` started by ``at`` boots, on its host."""
        host = self.plan.worker(worker, at).host
        peers = tuple(self.plan.initial.workers())
        return wire.Boot(
            worker=worker,
            controller=self.pool.address,
            authkey=self.pool.key.hex(),
            parent_pid=self.pool.sites[host].pid,
            runtime=self.runtime,
            backend=self.backend,
            device=self.devices.get(worker, "cpu"),
            store_addr=self.network.address(host),
            workload=workload_of(self.scenario),
            peers=peers,
            rendezvous=self.rendezvous,
            rendezvous_addr=self.network.address(self.plan.initial.host_of(peers[0])),
            netns=self.network.netns(host),
            ifname=self.network.ifname(host),
            watch_s=self.watch_s,
        )

    # -- waiting -------------------------------------------------------------------------

    def _open(self) -> str | None:
        """Listen for agents and open each host's site (the fork server here, or a host
        actor per cluster node); None, or why not."""
        self.pool.listen(self.network.listen_on)
        try:
            sites = self.network.open_sites(self.runtime, self.logs, self.bringup_timeout_s)
        except (BringUpFailed, ZygoteError, OSError) as exc:
            self.pool.open(self.network.started())  # the teardown closes those that started
            return str(exc)
        self.pool.open(sites)
        return None

    # -- playing the timeline --------------------------------------------------------------

    def _schedule(self, steps: list[Step]) -> None:
        self.schedule.add(actions(steps, first=self.scheduled))
        self.scheduled += len(steps)

    def now(self) -> float:
        """Seconds since the workload started."""
        return self.recorder.since_t0()

    def advance(self, until: float) -> None:
        """Play the timeline until ``until`` seconds after the workload started."""
        t0 = self.recorder.t0
        assert t0 is not None, "start() first"
        while True:
            now = self.clock()
            while (action := self.schedule.pop_due(now - t0)) is not None:
                if now - t0 - action.at >= LAG_S:
                    late = round(now - t0 - action.at, 3)
                    self.recorder.note(Lag, source=Source.CONTROLLER, lag_s=late, due=action.at)
                dispatch(action, self.injector)
            if now >= t0 + until:
                self.recorder.flush(now=True)  # a reader of the history sees it all
                return
            due = self.schedule.next_at()
            self.loop.pump(t0 + min(until, due if due is not None else until))

    def inject(self, fields: dict[str, Any]) -> Step:
        """Add an event that happens now to the running scenario, and do it.

        For interactive use (the stateful fuzzer): ``fields`` are an event's keys without
        ``at``. ``PlanError`` if the event is impossible at this moment.
        """
        at = round(self.now(), 3)
        events = [*self.scenario.events, parse_event({**fields, "at": at})]
        duration = max(self.scenario.duration_s, at)
        grown = self.scenario.model_copy(update={"events": events, "duration_s": duration})
        self.injector.plan, self.scenario = grown.plan, grown
        self.devices = devices(grown.plan, self.backend)
        step = next(s for s in self.plan.steps if s.index == len(events) - 1)
        self._schedule([step])
        self.advance(at)
        return step

    # -- the run ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bring the deployment up and start the workload (``BringUpFailed`` if it cannot).

        After ``start``, ``finish`` must be called (it is what stops every process).
        """
        self.started = self.clock()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.recorder.open()
        self.trap.trap()
        self.network.up()
        failure = self._open()
        if failure is None and self.runtime_class.needs_rendezvous:
            first_host = self.plan.initial.host_of(self.plan.initial.workers()[0])
            self.rendezvous = self.network.free_port(first_host)
            self.formation.ports.add(self.rendezvous)
        failure = failure or self.bringup.warm_up()
        if failure is not None:
            failure = f"the harness failed: {failure}"
        meta = versions(self.runtime_class)
        sites = self.pool.distinct_sites()
        meta["runtime_package"]["imported"] = sites[0].loaded if sites else {}  # agents inherit
        self.recorder.note(
            Run,
            scenario=self.scenario.name,
            digest=self.scenario.digest(),
            mode=Mode.REAL,
            runtime=self.runtime,
            backend=self.backend,
            network=self.network.describe(),
            seed=self.scenario.seed,
            **meta,
        )
        if failure is not None:
            raise self.bringup.failed(Stage.OPEN, Cause.HARNESS, failure, [])
        failed = self.bringup.run()
        if failed is not None:
            raise failed
        self._schedule(self.plan.steps)
        self.advance(0.0)  # return once the workload has started everywhere

    def _wind_down(self) -> None:
        """Stop recording everywhere, settle confirmations, then ask every agent to exit."""
        self.recorder.note(Phase, name=PhaseName.STOP)
        live = [a for a in self.pool.every if a.alive]
        for agent in live:
            self.pool.command(agent.worker, wire.Stop())
        self.loop.until(
            lambda: all(a.stop_acked or not a.alive or self.pool.is_stopped(a) for a in live),
            self.clock() + STOP_GRACE_S,
        )
        last = self.confirmations.deadline()
        if last is not None:
            self.loop.until(lambda: not self.confirmations, last)
        for agent in live:
            agent.expect_exit = agent.expect_exit or "teardown"
            self.pool.command(agent.worker, wire.Exit())
        self.loop.until(
            lambda: all(not a.alive or self.pool.is_stopped(a) for a in live),
            self.clock() + EXIT_GRACE_S,
        )

    def _teardown(self, status: RunStatus) -> Leftovers:
        """Kill what is left (whole groups), reap, check nothing is left, close the history."""
        self.trap.holding = True  # a second Ctrl-C now waits for the teardown to finish
        try:
            self.injector.close()
            live = self.pool.kill_all("teardown")
            with contextlib.suppress(ZygoteError):
                self.loop.until(lambda: all(a.reaped for a in live), self.clock() + EXIT_GRACE_S)
            found, checked = self.pool.shutdown(self.formation.ports)
            found = self.network.with_down(found, tuple(self.network.down()))
            if self.recorder.t0 is None:  # never started: stamp what we have relative to now
                self.recorder.start(self.clock())
            if status is RunStatus.INTERRUPTED:
                self.recorder.note(Phase, name=PhaseName.INTERRUPTED)
            self.recorder.note(
                Hygiene,
                ok=found.clean,
                detail=found.describe(),
                processes=len(self.pool.every),
                ports=sorted(self.formation.ports),
                checked=checked,
            )
            self.recorder.close()
            self.waker.close()
            return found
        finally:
            self.trap.release()

    def finish(
        self, status: RunStatus = RunStatus.COMPLETED, reason: str = "", cause: str | None = None
    ) -> RealRun:
        """Wind down (if the run went well) and tear everything down; the outcome
        (``cause``: whose doing a failed bring-up was)."""
        try:
            if status is RunStatus.COMPLETED:
                self._wind_down()
        finally:
            leftovers = self._teardown(status)
        wall = self.clock() - self.started
        history = self.out / "history.jsonl"
        return RealRun(history, self.logs, status, reason, leftovers, wall, cause)

    def run(self) -> RealRun:
        """Bring up, play the scenario, wind down; the teardown runs whatever ends the run."""
        try:
            self.start()
            self.advance(self.scenario.duration_s)
        except BringUpFailed as exc:
            return self.finish(RunStatus.BRINGUP_FAILED, str(exc), exc.cause)
        except BaseException:
            self.finish(RunStatus.INTERRUPTED, "interrupted")
            raise
        return self.finish()
