"""The replay controller: one scenario on real agent processes, recorded as a History.

It brings the deployment up (one agent per worker; rank 0 of each world picks a free
port at run time), starts the workload everywhere at one instant ``t0``, plays the
plan's actions at their wall-clock times through the same dispatch as the simulator
(:mod:`mwsim.playback`), and tears everything down whatever ends the run. Its parts each
do one job: ``AgentPool`` (the processes), ``Formation`` (forming worlds), ``Injector``
(the executor's verbs on real processes), ``Schedule`` and ``Confirmations`` (when to
act, and whether it took), ``Recorder`` (the history), ``SignalTrap`` (Ctrl-C). Every
wait has a deadline, so a hung system under test ends as a recorded history.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from mwsim import hosts, runtimes
from mwsim.errors import BringUpFailed, Inconclusive, ZygoteError
from mwsim.events import parse_event
from mwsim.history import (
    Agent,
    Bringup,
    Cause,
    Error,
    Exit,
    Hygiene,
    Lag,
    Mode,
    Op,
    Phase,
    PhaseName,
    Run,
    Source,
    Stage,
)
from mwsim.hosts.netfaults import NetFaults, unavailable_for
from mwsim.membership import Plan, Step
from mwsim.playback import actions, dispatch
from mwsim.replay import protocol as wire
from mwsim.replay.injector import Injector
from mwsim.replay.lag import LAG_S, CpuWatch
from mwsim.replay.pool import AgentPool, AgentProc, Handler, log_tail
from mwsim.replay.processes import Leftovers
from mwsim.replay.raynodes import RayNodes
from mwsim.replay.recorder import Clock, Recorder
from mwsim.replay.schedule import Confirmations, Schedule
from mwsim.replay.signals import SignalTrap, Waker
from mwsim.replay.sites import LocalSite, Site
from mwsim.replay.worlds import Formation
from mwsim.replay.zygote import Zygote
from mwsim.scenario import Scenario
from mwsim.timing import model_for, progress_window, sized

#: When set, where every replay places its agents (as ``cluster``): ``fuzz --cluster``.
CLUSTER_ENV = "MWSIM_CLUSTER"
START_LEAD_S = 0.05
STOP_GRACE_S = 2.0
EXIT_GRACE_S = 5.0
PROGRESS_EVERY_S = 0.25

Progress = Callable[[float, float, dict[str, int]], None]


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


def agent_env() -> dict[str, str]:
    """The environment of the fork server (and so of every agent)."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


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
        self.cluster = cluster
        self.devices = devices(scenario.plan, self.backend, per_host=cluster is not None)
        # the checks and the model expect this poll period for this size (timing.sized)
        self.model = sized(model_for(self.runtime), scenario)
        self.watch_s = self.model.poll_s
        needed = len(set(self.devices.values())) if self.backend == "nccl" else 0
        if cluster is None:
            self.runtime_class = runtime_class(self.runtime, self.backend, needed, scenario)
        else:  # the GPUs are the nodes' (placement checks them); the runtime must be here too
            self.runtime_class = runtime_class(self.runtime, "gloo", 0, scenario)
        faults = any(step.event.info.network for step in scenario.plan.steps)
        topology_hosts = scenario.plan.initial.hosts()
        self.network: hosts.Network
        if cluster is not None:
            gpus = {h: scenario.plan.initial.gpus_of(h) for h in topology_hosts}
            nccl = self.backend == "nccl"
            self.network = RayNodes(cluster, topology_hosts, gpus if nccl else {})
            for step in scenario.plan.steps:
                reason = self.network.unavailable_for(step.event)
                if reason is not None:
                    raise Inconclusive(f"events[{step.index}]: {reason}")
        else:
            self.network = hosts.choose(topology_hosts, needed=faults, prefer=network)
        for step in scenario.plan.steps:
            reason = unavailable_for(step.event)
            if reason is not None:
                raise Inconclusive(f"events[{step.index}]: {reason}")
        self.bringup_timeout_s = bringup_timeout_s
        self.progress = progress
        self.out = Path(out_dir)
        self.logs = self.out / "logs"
        self.clock = clock
        # a caller's warm fork server (kept across runs), if it has this runtime's image
        usable = zygote is not None and zygote.image == self.runtime_class.image()
        self.shared_zygote = zygote if usable else None
        self.waker = Waker()
        self.recorder = Recorder(self.out / "history.jsonl", clock)
        handlers: dict[type[wire.Message], Handler] = {
            wire.Events: self._on_events,
            wire.Fatal: self._on_fatal,
        }
        key = self.network.key if isinstance(self.network, RayNodes) else None
        self.pool = AgentPool(self.logs, self.waker, handlers, self._on_exit, key)
        self.pool.handlers[wire.Hello] = self._on_hello
        self.formation = Formation(self.pool)
        self.pool.handlers[wire.Port] = self.formation.on_port
        self.schedule = Schedule()
        self.scheduled = 0  # steps scheduled so far (their order in the schedule)
        self.confirmations = Confirmations(clock, self.recorder.record)
        net = NetFaults(self.network) if isinstance(self.network, hosts.Emulated) else None
        if isinstance(self.network, RayNodes):
            net = self.network.faults
        self.injector = Injector(
            scenario.plan,
            self.pool,
            self.formation,
            self.recorder,
            self.confirmations,
            self._boot,
            clock,
            net,
        )
        self.trap = SignalTrap(self.waker)
        self.rendezvous: int | None = None
        self.go: float | None = None  # when the workload was told to start
        self.served: set[tuple[str, int]] = set()  # worlds with an op before the clock starts
        self.harness_errors: list[str] = []  # mwsim's own failures during bring-up
        self.runtime_errors: set[str] = set()  # workers whose runtime raised in bring-up
        self.cpu = CpuWatch()
        self.started = 0.0
        self.last_progress = 0.0

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
            workload=self.scenario.workload.model_dump(),
            peers=peers,
            rendezvous=self.rendezvous,
            rendezvous_addr=self.network.address(self.plan.initial.host_of(peers[0])),
            netns=self.network.netns(host),
            ifname=self.network.ifname(host),
            watch_s=self.watch_s,
        )

    # -- what agents report ----------------------------------------------------------------

    def _on_events(self, agent: AgentProc, message: wire.Events) -> None:
        for record in message.records:
            self.formation.saw(agent, record)
            self.recorder.record(record)
            if self.recorder.t0 is not None:
                continue
            if isinstance(record, Op):
                self.served.add((record.world, record.life or 0))
            elif isinstance(record, Error) and record.source == Source.HARNESS:
                self.harness_errors.append(f"{agent.worker}: {record.message}")
            elif isinstance(record, Error) and record.source == Source.RUNTIME:
                self.runtime_errors.add(agent.worker)

    def _on_hello(self, agent: AgentProc, message: wire.Hello) -> None:
        if message.node is not None:  # where a cluster's agent says it runs
            host = self.plan.worker(agent.worker, self._now_or_zero()).host
            self.recorder.note(
                Agent,
                worker=agent.worker,
                incarnation=agent.incarnation,
                pid=message.pid,
                host=host,
                node=message.node,
                address=self.network.address(host),
            )

    def _now_or_zero(self) -> float:
        return self.now() if self.recorder.t0 is not None else 0.0

    def _on_fatal(self, agent: AgentProc, message: wire.Fatal) -> None:
        self.recorder.note(
            Error, worker=agent.worker, message=message.message[-500:], source=Source.HARNESS
        )
        last = (message.message.strip().splitlines() or ["?"])[-1]
        self.harness_errors.append(f"agent {agent.worker} failed: {last}")

    def _on_exit(self, agent: AgentProc) -> None:
        attrs: dict[str, Any] = {"worker": agent.worker, "code": agent.code}
        attrs["expected"] = agent.expect_exit is not None
        if agent.expect_exit is None:
            attrs["detail"] = log_tail(agent.log, 6)[-500:]
        self.recorder.note(Exit, **attrs)

    # -- waiting -------------------------------------------------------------------------

    def _pump(self, until: float) -> None:
        """Handle everything that happens until ``until`` (or the next due check); a
        trapped signal wakes the wait and is raised here."""
        now = self.clock()
        horizon = min(until, now + PROGRESS_EVERY_S)
        if self.confirmations:
            horizon = min(horizon, now + 0.01)
        self.pool.poll(horizon - now)
        lost = next((why for site in self.pool.distinct_sites() if (why := site.lost())), None)
        if lost is not None:  # its agents died with it, unreported: nothing can be judged
            raise ZygoteError(lost)
        woke = self.clock()
        if woke - horizon >= LAG_S:
            self.recorder.note(Lag, source=Source.CONTROLLER, lag_s=round(woke - horizon, 3))
        cpu = self.cpu.sample(woke)
        if cpu is not None:
            self.recorder.note(Lag, mono=woke, **cpu)
        self.confirmations.settle()
        self.recorder.flush()
        self._report_progress(now)
        self.trap.check()

    def _report_progress(self, now: float) -> None:
        t0 = self.recorder.t0
        if self.progress is None or t0 is None or now - self.last_progress < PROGRESS_EVERY_S:
            return
        self.last_progress = now
        self.progress(now - t0, self.scenario.duration_s, dict(self.recorder.counts))

    def _await(self, condition: Callable[[], bool], deadline: float) -> bool:
        while not condition():
            if self.clock() >= deadline:
                return False
            self._pump(deadline)
        return True

    def _open(self) -> str | None:
        """Listen for agents and open each host's site (the fork server here, or a host
        actor per cluster node); None, or why not."""
        if isinstance(self.network, RayNodes):
            self.pool.listen(self.network.controller)
            try:
                sites: dict[str, Site] = dict(
                    self.network.start_sites(self.runtime, self.logs, self.bringup_timeout_s)
                )
            except (BringUpFailed, ZygoteError, OSError) as exc:
                self.pool.open(self.network.sites)  # the teardown closes those that started
                return str(exc)
        else:
            self.pool.listen()
            owned = self.shared_zygote is None
            zygote = self.shared_zygote or Zygote(
                self.runtime, self.logs / "zygote.log", agent_env()
            )
            sites = dict.fromkeys(self.plan.initial.hosts(), LocalSite(zygote, owned))
        self.pool.open(sites)
        return None

    def _warm_up(self) -> str | None:
        """Wait for every fork server to have imported the runtime; None when they have,
        else why."""
        deadline = self.clock() + self.bringup_timeout_s
        for site in self.pool.distinct_sites():
            try:
                site.wait_ready(max(0.0, deadline - self.clock()))
            except ZygoteError as exc:
                return f"the fork server did not start: {exc}\n" + log_tail(site.log)
        return None

    def _bring_up(self) -> BringUpFailed | None:
        """Start the initial agents, form the initial worlds, then have each serve an op;
        None on success, else the failure with its cause (see ``_stage``; a fork server
        lost is the harness's)."""
        try:
            return self._form_and_serve()
        except ZygoteError as exc:
            waiting = [life.name for life in self.plan.worlds if life.origin is None]
            stage = Stage.FORM if self.go is None else Stage.SERVE
            return self._failed(stage, Cause.HARNESS, f"the harness failed: {exc}", waiting)

    def _form_and_serve(self) -> BringUpFailed | None:
        deadline = self.clock() + self.bringup_timeout_s
        for worker in self.plan.initial.workers():
            self.pool.spawn(self._boot(worker, 0.0), self.plan.initial.host_of(worker))
        initial = [life for life in self.plan.worlds if life.origin is None]
        for life in initial:
            self.formation.form(life)

        def unformed() -> list[str]:
            return [life.name for life in initial if not self.formation.formed(life)]

        def formation_moved() -> int:
            return sum(a.ready for a in self.pool.every) + len(self.formation.joined)

        stall = self.model.form_stall_s
        failed = self._stage(Stage.FORM, unformed, formation_moved, stall, deadline)
        if failed is not None:
            return failed
        self.go = self.clock() + START_LEAD_S
        for agent in self.pool.every:
            self.pool.command(agent.worker, wire.Start(self.go))
        # the workload's clock starts once every initial world has served an op
        wanted = {(life.name, life.id.life) for life in initial}

        def unserved() -> list[str]:
            return sorted(name for name, _ in wanted - self.served)

        stall = self.model.serve_stall_s(progress_window(self.model, self.scenario))
        failed = self._stage(Stage.SERVE, unserved, lambda: len(self.served), stall, deadline)
        if failed is None:
            self.recorder.start(self.clock())
        return failed

    def _stage(
        self,
        stage: Stage,
        waiting: Callable[[], list[str]],
        moved: Callable[[], int],
        stall_s: float,
        deadline: float,
    ) -> BringUpFailed | None:
        """Serve the agents until no world is ``waiting``; else the failure and whose
        doing it was. The harness's: an error of mwsim's own (a fork server lost raises
        ``ZygoteError`` from ``_pump``). The runtime's: an agent that exited (by SIGKILL,
        which others send too: unclear), or nothing ``moved`` for ``stall_s`` (or the
        deadline passed) after the runtime raised; a stall without an error is unclear.
        The reference runtime decides what is unclear (``mwsim.runs.ask_reference``)."""
        mark, moved_at = moved(), self.clock()
        while names := waiting():
            if self.harness_errors:
                why = f"the harness failed: {self.harness_errors[0]}"
                return self._failed(stage, Cause.HARNESS, why, names)
            dead = next((a for a in self.pool.every if not a.alive), None)
            if dead is not None:
                killed = dead.code == -signal.SIGKILL and dead.worker not in self.runtime_errors
                tail = log_tail(dead.log)
                why = f"agent {dead.worker} exited during bring-up (code {dead.code})"
                why += f":\n{tail}" if tail else ""
                return self._failed(stage, Cause.UNCLEAR if killed else Cause.RUNTIME, why, names)
            now = self.clock()
            if moved() != mark:
                mark, moved_at = moved(), now
            stalled = now - moved_at >= stall_s
            if stalled or now >= deadline:
                what = "formed" if stage is Stage.FORM else "served an op"
                why = (
                    f"bring-up stalled: nothing moved for {stall_s:g} s"
                    if stalled
                    else f"bring-up did not finish within {self.bringup_timeout_s:g} s"
                )
                why += f": {len(names)} world(s) not {what} ({', '.join(names[:8])})"
                cause = Cause.RUNTIME if self.runtime_errors else Cause.UNCLEAR
                return self._failed(stage, cause, why, names, stall_s if stalled else None)
            self._pump(min(deadline, moved_at + stall_s))
        return None

    def _failed(
        self,
        stage: Stage,
        cause: Cause,
        reason: str,
        waiting: list[str],
        stalled_s: float | None = None,
    ) -> BringUpFailed:
        """Stop the clock where bring-up failed and record why (a ``bringup`` record): the
        judged interval is the bring-up's (from the workload's start, at the serve stage)."""
        now = self.clock()
        if self.recorder.t0 is None:
            self.recorder.start(self.go if self.go is not None else now)
        fields: dict[str, Any] = {"waiting": waiting[:20]}
        if stalled_s is not None:
            fields["stalled_s"] = stalled_s
        self.recorder.note(
            Bringup,
            mono=now,
            ok=False,
            stage=stage,
            cause=cause,
            reason=reason[:2000],
            **fields,
        )
        self.recorder.note(Phase, mono=now, name=PhaseName.STOP)
        return BringUpFailed(reason, cause)

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
            self._pump(t0 + min(until, due if due is not None else until))

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
        failure = failure or self._warm_up()
        if failure is not None:
            failure = f"the harness failed: {failure}"
        meta = versions(self.runtime_class)
        sites = self.pool.distinct_sites()
        meta["runtime_package"]["imported"] = sites[0].loaded if sites else {}  # agents inherit
        self.recorder.note(
            Run,
            scenario=self.scenario.name,
            mode=Mode.REAL,
            runtime=self.runtime,
            backend=self.backend,
            network=self.network.describe(),
            seed=self.scenario.seed,
            **meta,
        )
        if failure is not None:
            raise self._failed(Stage.OPEN, Cause.HARNESS, failure, [])
        failed = self._bring_up()
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
        self._await(
            lambda: all(a.stop_acked or not a.alive or self.pool.is_stopped(a) for a in live),
            self.clock() + STOP_GRACE_S,
        )
        last = self.confirmations.deadline()
        if last is not None:
            self._await(lambda: not self.confirmations, last)
        for agent in live:
            agent.expect_exit = agent.expect_exit or "teardown"
            self.pool.command(agent.worker, wire.Exit())
        self._await(
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
                self._await(lambda: all(a.reaped for a in live), self.clock() + EXIT_GRACE_S)
            found, checked = self.pool.shutdown(self.formation.ports)
            down = tuple(self.network.down())
            if isinstance(self.network, RayNodes):
                found = replace(found, cluster=down)
            else:
                found = replace(found, namespaces=down)
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
