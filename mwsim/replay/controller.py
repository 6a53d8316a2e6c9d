"""The replay controller: one scenario on real agent processes, recorded as a History.

It starts one agent per worker, forms the worlds (rank 0 of each picks a free port at
run time), starts the workload everywhere at one instant ``t0``, plays the scenario's
events at wall-clock times, and writes every agent's events to the history the moment
they arrive. Each fault is confirmed from the kernel's view of the process (dead,
stopped, running again) and recorded with ``confirmed``. The controller never blocks on
an agent: every wait has a deadline, so a hung system under test ends as a recorded
history, and the teardown leaves no process or port behind whatever ends the run.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import queue
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, Listener, wait
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from mwsim import runtimes
from mwsim.history import Event, HistoryWriter
from mwsim.membership import Plan, Step, WorldLife, plan
from mwsim.replay import processes, protocol
from mwsim.replay.processes import Leftovers
from mwsim.replay.zygote import Zygote, ZygoteError
from mwsim.scenario import Event as ScenarioEvent
from mwsim.scenario import Scenario

STORE_ADDR = "127.0.0.1"
START_LEAD_S = 0.05
CONFIRM_WITHIN_S = {"crash": 2.0, "crash_host": 2.0, "hang": 2.0, "resume": 2.0, "slow": 2.0}
LEAVE_WITHIN_S = 10.0
STOP_GRACE_S = 2.0
EXIT_GRACE_S = 5.0
PROGRESS_EVERY_S = 0.25
FAULTS = ("crash", "crash_host", "hang", "leave", "slow")

Progress = Callable[[float, float, dict[str, int]], None]
_EVENT = TypeAdapter(ScenarioEvent)


class Inconclusive(Exception):
    """The environment lacks what the scenario needs; nothing was started."""


class BringUpFailed(Exception):
    """The deployment did not come up (an agent died, or the bring-up deadline passed)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM reached the controller; raised where it waits, after which the
    teardown runs in full. ``signum`` is the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class RealRun:
    """The outcome of one real replay."""

    history: Path
    logs: Path
    status: str  # completed | bringup_failed
    reason: str
    leftovers: Leftovers
    wall_s: float


@dataclass
class AgentProc:
    """One agent process as the controller sees it."""

    worker: str
    incarnation: int
    pid: int  # also its process group: every agent leads its own session
    log: Path
    conn: Connection | None = None
    ready: bool = False
    stop_acked: bool = False
    code: int | None = None  # exit status once reaped (negative: killed by that signal)
    expect_exit: str | None = None  # why an exit is expected: a fault, or the teardown
    held: list[dict[str, Any]] = field(default_factory=list)  # commands sent once ready
    on_ready: list[Callable[[], None]] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)
    reaped: bool = False  # its exit is recorded

    @property
    def alive(self) -> bool:
        return self.code is None


@dataclass
class _Pending:
    """A fault or heal waiting for the kernel to confirm it."""

    record: dict[str, Any]
    mono: float
    check: Callable[[], bool]
    deadline: float


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class Controller:
    """Runs one scenario on real processes; ``run()`` once, then it is spent."""

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
    ) -> None:
        self.scenario = scenario
        self.shared_zygote = zygote  # owned by the caller (kept warm across runs)
        self.plan: Plan = plan(scenario)
        self.runtime = runtime or scenario.runtime
        self.backend = backend or scenario.backend
        self.bringup_timeout_s = bringup_timeout_s
        self.progress = progress
        self.out = Path(out_dir)
        self.logs = self.out / "logs"
        self.devices = self._devices()
        self._check_environment()

        self.agents: dict[str, AgentProc] = {}
        self.every_agent: list[AgentProc] = []
        self.t0: float | None = None
        self.prestart: list[dict[str, Any]] = []
        self.ports: set[int] = set()
        self.forming: dict[tuple[str, int], tuple[str, ...]] = {}
        self.joined: set[tuple[str, int, str]] = set()
        self.pending: list[_Pending] = []
        self.counts = {"ops": 0, "broken": 0, "faults": 0}
        self.last_progress = 0.0
        self.interrupt: int | None = None
        self.tearing_down = False
        self._handlers: dict[int, Any] = {}

    # -- environment ---------------------------------------------------------------------

    def _devices(self) -> dict[str, str]:
        """Device per worker name: ``cpu`` for gloo; a distinct ``cuda:N`` per GPU slot for nccl."""
        names = {w.name for w in self.plan.workers}
        if self.backend != "nccl":
            return dict.fromkeys(names, "cpu")
        offsets, total = {}, 0
        for host in self.plan.initial.hosts():
            offsets[host] = total
            total += self.plan.initial.gpus_of(host)
        devices, used = {}, dict.fromkeys(offsets, 0)
        for life in self.plan.workers:
            local = life.gpu if life.gpu is not None else used[life.host]
            used[life.host] = max(used[life.host], local + 1)
            devices[life.name] = f"cuda:{offsets[life.host] + local}"
        return devices

    def _check_environment(self) -> None:
        try:
            cls = runtimes.load(self.runtime)
        except LookupError as exc:
            raise Inconclusive(str(exc)) from None
        self.runtime_class = cls
        needed = len(set(self.devices.values())) if self.backend == "nccl" else 0
        reason = cls.unavailable(self.backend, needed)
        if reason:
            raise Inconclusive(f"runtime {self.runtime}: {reason}")

    # -- recording -----------------------------------------------------------------------

    def _record(self, record: dict[str, Any]) -> None:
        """Write one event (``mono`` stamped); before t0 it waits for t0 to be known."""
        if record.get("kind") == "op":
            self.counts["ops"] += 1
        elif record.get("kind") == "broken":
            self.counts["broken"] += 1
        if self.t0 is None:
            self.prestart.append(record)
        else:
            self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        assert self.t0 is not None
        attrs = {k: v for k, v in record.items() if k not in ("mono", "kind", "type")}
        self.writer.write(Event(record["mono"] - self.t0, record["kind"], attrs))

    def _note(self, kind: str, mono: float | None = None, **attrs: Any) -> None:
        self._record({"kind": kind, "mono": time.monotonic() if mono is None else mono, **attrs})

    # -- agents --------------------------------------------------------------------------

    def _spawn(self, worker: str) -> AgentProc:
        incarnation = sum(1 for a in self.every_agent if a.worker == worker)
        suffix = "" if incarnation == 0 else f"~{incarnation}"
        log = self.logs / f"{worker}{suffix}.log"
        boot = protocol.Boot(
            worker=worker,
            controller=self.listener.address,
            authkey=self.key.hex(),
            parent_pid=self.zygote.pid,
            runtime=self.runtime,
            backend=self.backend,
            device=self.devices.get(worker, "cpu"),
            store_addr=STORE_ADDR,
            workload=self.scenario.workload.model_dump(),
            peers=tuple(self.plan.initial.workers()),
            rendezvous=self.rendezvous,
        )
        pid = self.zygote.fork(asdict(boot), log)
        agent = AgentProc(worker, incarnation, pid, log)
        self.agents[worker] = agent
        self.every_agent.append(agent)
        self.by_pid[pid] = agent
        return agent

    def _command(self, worker: str, message: dict[str, Any]) -> None:
        agent = self.agents.get(worker)
        if agent is None or not agent.alive:
            return
        if not agent.ready or agent.conn is None:
            agent.held.append(message)
            return
        with contextlib.suppress(OSError):  # it is dying; its exit is recorded when reaped
            protocol.send(agent.conn, message)

    def _accept_loop(self) -> None:
        """Accept authenticated agent connections (a thread: accept() blocks)."""
        while True:
            try:
                conn = self.listener.accept()
            except OSError:
                return  # listener closed
            except Exception:  # failed authentication and the like
                continue
            try:
                hello = protocol.recv(conn) if conn.poll(10) else None
            except (EOFError, OSError, ValueError):
                hello = None
            if hello is None or hello.get("type") != "hello":
                conn.close()
                continue
            self.accepted.put((hello, conn))
            with contextlib.suppress(OSError):
                self.wake_w.send(b"x")

    def _attach(self, hello: dict[str, Any], conn: Connection) -> None:
        agent = self.agents.get(str(hello.get("worker")))
        if agent is None or agent.pid != hello.get("pid") or agent.conn is not None:
            conn.close()  # not one of ours
            return
        agent.conn = conn

    def _on_message(self, agent: AgentProc, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ready":
            agent.ready = True
            held, agent.held = agent.held, []
            for command in held:
                self._command(agent.worker, command)
            callbacks, agent.on_ready = agent.on_ready, []
            for callback in callbacks:
                callback()
        elif kind == "events":
            for record in message["events"]:
                if record.get("kind") == "joined":
                    self.joined.add((record["world"], record.get("life", 0), agent.worker))
                self._record(record)
        elif kind == "port":
            self.ports.add(int(message["port"]))
            key = (message["world"], int(message["life"]))
            members = self.forming.get(key, ())
            for rank, member in enumerate(members[1:], start=1):
                self._command(member, self._init(key, members, rank, int(message["port"])))
        elif kind == "ack":
            agent.acks.append(message["what"])
        elif kind == "stopped":
            agent.stop_acked = True
        elif kind == "fatal":
            self._note("error", worker=agent.worker, message=str(message["message"])[-500:])

    def _exited(self, pid: int, code: int) -> None:
        """The zygote reaped ``pid``: record how it ended."""
        agent = self.by_pid.get(pid)
        if agent is None or agent.reaped:
            return
        agent.code, agent.reaped = code, True
        attrs: dict[str, Any] = {"worker": agent.worker, "code": code}
        attrs["expected"] = agent.expect_exit is not None
        if agent.expect_exit is None:
            attrs["detail"] = _log_tail(agent.log, 6)[-500:]
        self._note("exit", **attrs)
        if agent.conn is not None:
            self._drain(agent)
            agent.conn.close()
            agent.conn = None

    def _drain(self, agent: AgentProc) -> None:
        """Read what an agent has sent; its last words before dying count too."""
        conn = agent.conn
        try:
            while conn is not None and conn.poll():
                self._on_message(agent, protocol.recv(conn))
        except (EOFError, OSError, ValueError):
            if agent.conn is not None and agent.alive:
                agent.conn.close()
                agent.conn = None

    # -- the loop ------------------------------------------------------------------------

    # -- signals -------------------------------------------------------------------------

    def _trap_signals(self) -> None:
        """Turn Ctrl-C and SIGTERM into ``Interrupted`` raised only where the controller
        waits: never inside a lock or a half-written record, so the teardown always runs."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.interrupt = signum
        with contextlib.suppress(OSError):
            self.wake_w.send(b"!")

    def _release_signals(self) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    def _check_interrupt(self) -> None:
        if self.interrupt is not None and not self.tearing_down:
            raise Interrupted(self.interrupt)

    def _pump(self, until: float) -> None:
        """Handle everything that happens until ``until`` (or the next due check); a signal
        taken meanwhile wakes the wait (``wake_w``) and is raised at the end."""
        now = time.monotonic()
        horizon = min(until, now + PROGRESS_EVERY_S)
        if self.pending:
            horizon = min(horizon, now + 0.01)
        watched: list[Any] = [self.wake_r, self.zygote]
        by_conn: dict[Any, AgentProc] = {}
        for agent in self.every_agent:
            if agent.conn is not None:
                watched.append(agent.conn)
                by_conn[agent.conn] = agent
        for ready in wait(watched, timeout=max(0.0, horizon - now)):
            if ready is self.wake_r:
                with contextlib.suppress(BlockingIOError):
                    self.wake_r.recv(4096)
                while not self.accepted.empty():
                    self._attach(*self.accepted.get_nowait())
            elif ready is not self.zygote:
                self._drain(by_conn[ready])
        for message in self.zygote.read():
            if "exit" in message:
                self._exited(int(message["exit"]), int(message["code"]))
        self._confirm()
        self._report_progress()
        self._check_interrupt()

    def _report_progress(self) -> None:
        now = time.monotonic()
        if self.progress is None or self.t0 is None or now - self.last_progress < PROGRESS_EVERY_S:
            return
        self.last_progress = now
        self.progress(now - self.t0, self.scenario.duration_s, dict(self.counts))

    def _confirm(self) -> None:
        now = time.monotonic()
        for item in list(self.pending):
            ok = item.check()
            if ok or now >= item.deadline:
                self.pending.remove(item)
                record = dict(item.record, mono=item.mono, confirmed=ok)
                record["confirm_s"] = round(now - item.mono, 4) if ok else None
                self._record(record)

    def _await(self, condition: Callable[[], bool], deadline: float) -> bool:
        while not condition():
            if time.monotonic() >= deadline:
                return False
            self._pump(deadline)
        return True

    # -- bring-up ------------------------------------------------------------------------

    def _init(self, key: tuple[str, int], members: tuple[str, ...], rank: int, port: int | None):
        world, life = key
        return {
            "type": "init_world",
            "world": world,
            "life": life,
            "rank": rank,
            "members": list(members),
            "port": port,
        }

    def _life_index(self, life: WorldLife) -> int:
        return self.plan.lives_of(life.name).index(life)

    def _form_joined(self, agent: AgentProc, lives: list[WorldLife]) -> None:
        """Form a joiner's worlds once it is up, unless it was told to go meanwhile."""
        if agent.expect_exit is None:
            for life in lives:
                self._form(life)

    def _form(self, life: WorldLife) -> None:
        key = (life.name, self._life_index(life))
        self.forming[key] = life.members
        self._command(life.members[0], self._init(key, life.members, 0, None))

    def _formed(self, life: WorldLife) -> bool:
        index = self._life_index(life)
        return all((life.name, index, m) in self.joined for m in life.members)

    def _bring_up(self) -> str | None:
        """Start the initial agents and form the initial worlds; None on success, else why."""
        deadline = time.monotonic() + self.bringup_timeout_s
        try:
            self.zygote.wait_ready(self.bringup_timeout_s)
        except ZygoteError as exc:
            return f"the fork server did not start: {exc}\n" + _log_tail(self.zygote.log)
        for worker in self.plan.initial.workers():
            self._spawn(worker)
        initial = [life for life in self.plan.worlds if life.origin == "initial"]
        for life in initial:
            self._form(life)

        def up() -> bool:
            return all(self._formed(life) for life in initial)

        while not up():
            dead = [a for a in self.every_agent if not a.alive]
            if dead:
                agent = dead[0]
                return (
                    f"agent {agent.worker} exited during bring-up (code {agent.code}):\n"
                    + _log_tail(agent.log)
                )
            if time.monotonic() >= deadline:
                waiting = [life.name for life in initial if not self._formed(life)]
                return (
                    f"bring-up did not finish within {self.bringup_timeout_s:g} s "
                    f"(worlds not formed: {', '.join(waiting[:8])})"
                )
            self._pump(deadline)
        self.t0 = time.monotonic() + START_LEAD_S
        for record in self.prestart:
            self._write(record)
        self.prestart = []
        for agent in self.every_agent:
            self._command(agent.worker, {"type": "start", "t0": self.t0})
        return None

    # -- the timeline --------------------------------------------------------------------

    def _schedule(self, step: Step) -> None:
        """Queue a step, and the end of its hang or slow, on the timeline."""
        event = step.event
        heapq.heappush(self.actions, (event.at, next(self.order), lambda: self._do(step)))
        for_s = getattr(event, "for_s", None)
        if event.do in ("hang", "slow") and for_s is not None:
            ends = (event.at + for_s, next(self.order), lambda: self._heal(step))
            heapq.heappush(self.actions, ends)

    def _alive_agents(self, workers: tuple[str, ...]) -> list[AgentProc]:
        return [self.agents[w] for w in workers if w in self.agents and self.agents[w].alive]

    def _pend(self, record: dict[str, Any], check: Callable[[], bool], within: float) -> None:
        """Await the kernel's confirmation; the record keeps the instant the action began."""
        self.counts["faults"] += record["kind"] == "fault"
        began = self.acting_since
        self.pending.append(_Pending(record, began, check, time.monotonic() + within))

    def _not_running(self, record: dict[str, Any], targets: tuple[str, ...]) -> bool:
        """Record a fault that cannot be injected because its process already ended."""
        if self._alive_agents(targets):
            return False
        self._note(**record, confirmed=False, detail="the process was no longer running")
        return True

    def _do(self, step: Step) -> None:
        self.acting_since = time.monotonic()  # before any signal: reports may follow at once
        event = step.event
        do = event.do
        if do in FAULTS and self._not_running(
            {"kind": "fault", "do": do, "target": event.target}, step.workers
        ):
            return
        if do in ("crash", "crash_host"):
            victims = self._alive_agents(step.workers)
            for agent in victims:
                agent.expect_exit = do
                processes.signal_group(agent.pid, signal.SIGKILL)
            record = {"kind": "fault", "do": do, "target": event.target}
            if do == "crash_host":
                record["workers"] = list(step.workers)
            self._pend(
                record,
                lambda v=victims: all(a.code == -signal.SIGKILL for a in v),
                CONFIRM_WITHIN_S[do],
            )
        elif do == "hang":
            agent = self.agents[event.target]
            processes.signal_group(agent.pid, signal.SIGSTOP)
            record = {"kind": "fault", "do": "hang", "target": event.target, "for_s": event.for_s}
            self._pend(
                record, lambda a=agent: processes.is_stopped(a.pid), CONFIRM_WITHIN_S["hang"]
            )
        elif do == "leave":
            agent = self.agents[event.target]
            agent.expect_exit = "leave"
            self._command(event.target, {"type": "leave"})
            self._pend(
                {"kind": "fault", "do": "leave", "target": event.target},
                lambda a=agent: a.code == 0,
                LEAVE_WITHIN_S,
            )
        elif do == "slow":
            agent = self.agents[event.target]
            assert self.t0 is not None
            until = None if event.for_s is None else self.t0 + event.at + event.for_s
            self._command(
                event.target, {"type": "slow", "delay_ms": event.delay_ms, "until": until}
            )
            record = {
                "kind": "fault",
                "do": "slow",
                "target": event.target,
                "delay_ms": event.delay_ms,
                "for_s": event.for_s,
            }
            acked = len(agent.acks)
            self._pend(record, lambda a=agent, n=acked: len(a.acks) > n, 2.0)
        elif do == "join":
            self._note("scale", do="join", worker=event.worker, worlds=sorted(event.worlds))
            agent = self._spawn(event.worker)
            self._command(event.worker, {"type": "start", "t0": self.t0})
            lives = [life for life in self.plan.worlds if life.origin_event == step.index]
            agent.on_ready.append(lambda a=agent, ls=lives: self._form_joined(a, ls))
        elif do == "add_world":
            self._note("scale", do="add_world", world=event.world, members=list(event.members))
            for life in self.plan.worlds:
                if life.origin_event == step.index:
                    self._form(life)
        elif do == "remove_world":
            self._note("scale", do="remove_world", world=event.world)
            for member in step.workers:
                self._command(member, {"type": "remove_world", "world": event.world})

    def _heal(self, step: Step) -> None:
        self.acting_since = time.monotonic()
        event = step.event
        agent = self.agents.get(event.target)
        if agent is None or not agent.alive or agent.incarnation != self._incarnation_at(step):
            return  # it died meanwhile; nothing to heal
        record = {"kind": "resumed", "do": event.do, "target": event.target}
        if event.do == "hang":
            processes.signal_group(agent.pid, signal.SIGCONT)
            self._pend(record, lambda a=agent: not processes.is_stopped(a.pid), 2.0)
        else:
            acked = len(agent.acks)
            self._command(event.target, {"type": "slow", "delay_ms": 0.0, "until": None})
            self._pend(record, lambda a=agent, n=acked: len(a.acks) > n, 2.0)

    def _incarnation_at(self, step: Step) -> int:
        name = step.event.target
        return sum(1 for w in self.plan.workers if w.name == name and w.start <= step.event.at) - 1

    def now(self) -> float:
        """Seconds since the workload started."""
        assert self.t0 is not None, "start() first"
        return time.monotonic() - self.t0

    def advance(self, until: float) -> None:
        """Play the timeline until ``until`` seconds after the workload started."""
        assert self.t0 is not None, "start() first"
        end = self.t0 + until
        while True:
            now = time.monotonic()
            while self.actions and self.t0 + self.actions[0][0] <= now:
                heapq.heappop(self.actions)[2]()
            if now >= end:
                return
            due = self.t0 + self.actions[0][0] if self.actions else end
            self._pump(min(end, due))

    def inject(self, fields: dict[str, Any]) -> Step:
        """Add an event that happens now to the running scenario, and do it.

        For interactive use (the stateful fuzzer): ``fields`` are an event's keys without
        ``at``. ``PlanError`` if the event is impossible at this moment.
        """
        at = round(self.now(), 3)
        events = [*self.scenario.events, _EVENT.validate_python({**fields, "at": at})]
        duration = max(self.scenario.duration_s, at)
        grown = self.scenario.model_copy(update={"events": events, "duration_s": duration})
        self.plan = plan(grown)
        self.scenario = grown
        self.devices = self._devices()
        step = next(s for s in self.plan.steps if s.index == len(events) - 1)
        self._schedule(step)
        self.advance(at)
        return step

    def _wind_down(self) -> None:
        """Stop recording everywhere, then ask every agent to exit."""
        self._note("phase", name="stop")
        live = [a for a in self.every_agent if a.alive]
        for agent in live:
            self._command(agent.worker, {"type": "stop"})
        self._await(
            lambda: all(a.stop_acked or not a.alive or processes.is_stopped(a.pid) for a in live),
            time.monotonic() + STOP_GRACE_S,
        )
        self._confirm_all()
        for agent in live:
            agent.expect_exit = agent.expect_exit or "teardown"
            self._command(agent.worker, {"type": "exit"})
        self._await(
            lambda: all(not a.alive or processes.is_stopped(a.pid) for a in live),
            time.monotonic() + EXIT_GRACE_S,
        )

    def _confirm_all(self) -> None:
        """Settle confirmations still open (their deadlines are short)."""
        if self.pending:
            self._await(lambda: not self.pending, max(p.deadline for p in self.pending))

    # -- run -----------------------------------------------------------------------------

    def start(self) -> None:
        """Bring the deployment up and start the workload (``BringUpFailed`` if it cannot).

        After ``start``, ``finish`` must be called (it is what stops every process).
        """
        self._started = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.writer = HistoryWriter(self.out / "history.jsonl")
        self.key = secrets.token_bytes(32)
        self.listener = Listener((STORE_ADDR, 0), backlog=128, authkey=self.key)
        self.accepted: queue.Queue = queue.Queue()
        self.by_pid: dict[int, AgentProc] = {}
        self.actions: list[tuple[float, int, Callable[[], None]]] = []
        self.order = itertools.count()
        self.rendezvous = None
        if self.runtime_class.needs_rendezvous:
            self.rendezvous = processes.free_port(STORE_ADDR)
            self.ports.add(self.rendezvous)
        self.zygote = self.shared_zygote or Zygote(
            self.runtime, self.logs / "zygote.log", self._agent_env()
        )
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self._trap_signals()
        threading.Thread(target=self._accept_loop, name="mwsim-accept", daemon=True).start()
        self._note(
            "run",
            scenario=self.scenario.name,
            mode="real",
            runtime=self.runtime,
            backend=self.backend,
        )
        failure = self._bring_up()
        if failure is not None:
            self._note("error", message=failure[:2000])
            raise BringUpFailed(failure)
        for step in self.plan.steps:
            self._schedule(step)
        self.advance(0.0)  # return once the workload has started everywhere

    def finish(self, status: str = "completed", reason: str = "") -> RealRun:
        """Wind down (if the run went well) and tear everything down; the outcome."""
        try:
            if status == "completed":
                self._wind_down()
        finally:
            leftovers = self._teardown(status)
        return RealRun(
            self.out / "history.jsonl",
            self.logs,
            status,
            reason,
            leftovers,
            time.monotonic() - self._started,
        )

    def run(self) -> RealRun:
        """Bring up, play the scenario, wind down; the teardown runs whatever ends the run."""
        try:
            self.start()
            self.advance(self.scenario.duration_s)
        except BringUpFailed as exc:
            return self.finish("bringup_failed", str(exc))
        except BaseException:
            self.finish("interrupted", "interrupted")
            raise
        return self.finish()

    def _agent_env(self) -> dict[str, str]:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _teardown(self, status: str) -> Leftovers:
        """Kill what is left (whole groups), reap, check nothing is left, close the history."""
        self.tearing_down = True  # a second Ctrl-C now waits for the teardown to finish
        try:
            return self._tear_down(status)
        finally:
            self._release_signals()

    def _tear_down(self, status: str) -> Leftovers:
        live = [a for a in self.every_agent if a.alive]
        for agent in live:
            agent.expect_exit = agent.expect_exit or "teardown"
            processes.signal_group(agent.pid, signal.SIGKILL)
            processes.signal_group(agent.pid, signal.SIGCONT)
        with contextlib.suppress(ZygoteError):
            self._await(lambda: all(a.reaped for a in live), time.monotonic() + EXIT_GRACE_S)
        groups = [a.pid for a in self.every_agent]
        if self.shared_zygote is None:
            self.zygote.stop()
            groups.append(self.zygote.pid)
        with contextlib.suppress(OSError):
            self.listener.close()
        found = processes.leftovers(groups, self.ports)
        if self.t0 is None:  # never started: stamp what we have relative to now
            self.t0 = time.monotonic()
            for record in self.prestart:
                self._write(record)
            self.prestart = []
        if status == "interrupted":
            self._note("phase", name="interrupted")
        self._note(
            "hygiene",
            ok=found.clean,
            detail=found.describe(),
            processes=len(self.every_agent),
            ports=sorted(self.ports),
        )
        self.writer.close()
        for agent in self.every_agent:
            if agent.conn is not None:
                agent.conn.close()
        self.wake_r.close()
        self.wake_w.close()
        return found
