"""One worker process of a real replay: the runtime, one workload task per world, reports.

Forked by the fork server (:mod:`mwsim.replay.zygote`), which hands it its ``Boot``.
Each world runs in its own task so one stuck world cannot stall the others; a
watcher polls the runtime's broken-world query, because a pending gloo call is not
interrupted when the watchdog flags its world. Communicator calls are never cancelled
(cancelling freezes MultiWorld's event loop); a task stuck in one is simply left behind.
The event loop keeps running until the controller says ``exit``, then the process ends
with ``os._exit`` as MultiWorld's own ``cleanup()`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from mwsim import runtimes
from mwsim.events import Kind
from mwsim.history import Broken, Error, Joined, Lag, Left, Op, Record, Source
from mwsim.hosts.emulated import setns
from mwsim.membership import WorldId
from mwsim.replay import channel
from mwsim.replay import protocol as wire
from mwsim.replay.gpufaults import GpuFaults
from mwsim.replay.lag import LAG_S
from mwsim.replay.processes import free_port
from mwsim.replay.protocol import NODE_ENV, Boot

WATCH_PERIOD_S = 0.02
LEAVE_GRACE_S = 1.0
REMOVE_GRACE_S = 10.0
PR_SET_PDEATHSIG = 1


async def _until(condition: Any, timeout_s: float) -> bool:
    """Poll ``condition`` on the loop until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(WATCH_PERIOD_S)
    return True


@dataclass
class WorldRun:
    """One world at this worker: its link to the runtime and the state of its workload."""

    world: str
    life: int
    rank: int
    members: list[str]
    name: str
    task: asyncio.Task[None] | None = None
    reported: bool = False  # broken already reported
    removed: bool = False  # removed gracefully by us
    query_failed: bool = False  # the runtime's broken-world query raised
    ctl: Any = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def size(self) -> int:
        return len(self.members)


class Raised(Exception):
    """The runtime raised ``error`` from its operation ``op`` (not the harness's own code)."""

    def __init__(self, op: str, error: Exception) -> None:
        super().__init__(op, error)
        self.op, self.error = op, error


class _Link:
    """A ``workloads.Link`` over the runtime for one world; what the runtime raises comes
    out as ``Raised``, and a GPU slow stretches each op's GPU work."""

    def __init__(self, runtime: runtimes.Runtime, run: WorldRun, gpu: GpuFaults) -> None:
        self.runtime, self.name, self.gpu = runtime, run.name, gpu
        self.rank, self.size = run.rank, run.size

    async def _call(self, op: str, call: Any) -> None:
        began = time.monotonic()
        try:
            await call
        except Exception as exc:
            raise Raised(op, exc) from exc
        self.gpu.after_op(time.monotonic() - began)

    async def send(self, tensor: Any, dst: int) -> None:
        await self._call("send", self.runtime.send(self.name, tensor, dst))

    async def recv(self, tensor: Any, src: int) -> None:
        await self._call("recv", self.runtime.recv(self.name, tensor, src))

    async def all_reduce(self, tensor: Any) -> None:
        await self._call("all_reduce", self.runtime.all_reduce(self.name, tensor))


class Agent:
    """The life of one worker process, driven by the controller's commands."""

    def __init__(
        self, boot: Boot, conn: Connection, runtime: runtimes.Runtime, workloads: Any
    ) -> None:
        self.boot, self.conn = boot, conn
        self.runtime = runtime
        self.workloads = workloads  # the module (it imports torch)
        self.slowness = workloads.Slowness()
        self.gpu = GpuFaults(boot.device)
        self.worlds: dict[tuple[str, int], WorldRun] = {}
        self.node: Any = None  # this worker's part in the serve workload (``serve.Node``)
        if boot.workload["kind"] == "serve":
            from mwsim import serve  # imports torch, as the workloads do

            slow = workloads.Pace(0.0, slowness=self.slowness).slow
            self.node = serve.Node.of(boot, self.emit, slow)
        self.t0: float | None = None
        self.recording = True
        self.outbox: list[wire.Message] = []
        self.records: list[Record] = []  # history records, sent as one batch
        self.inbox: asyncio.Queue[wire.Message | None] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.commands: dict[type[wire.Message], Callable[[Any], None]] = {
            wire.InitWorld: self._on_init_world,
            wire.Start: self._on_start,
            wire.SetDelay: self._on_set_delay,
            wire.RemoveWorld: self._on_remove_world,
            wire.Leave: self._on_leave,
            wire.GpuFault: self._on_gpu_fault,
            wire.Stop: self._on_stop,
            wire.Exit: self._on_exit,
        }

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        """Start a task and hold a reference to it until it ends."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- reporting -----------------------------------------------------------------------

    def _later(self) -> None:
        if not self.outbox and not self.records:
            asyncio.get_running_loop().call_soon(self.flush)

    def send(self, message: wire.Message) -> None:
        """Queue a message; everything queued goes out at the end of this loop iteration."""
        self._later()
        self.outbox.append(message)

    def flush(self) -> None:
        batch, self.outbox = self.outbox, []
        records, self.records = self.records, []
        for message in batch:
            wire.send(self.conn, message)
        if records:
            wire.send(self.conn, wire.Events(tuple(records)))

    def emit(self, kind: type[Record], run: WorldRun | None = None, **fields: Any) -> None:
        """Record a history record now, stamped with this host's monotonic clock (sent by
        the end of this loop iteration)."""
        if not self.recording:
            return
        where = WorldId(run.world, run.life).attrs() if run is not None else {}
        record = kind.of(time.monotonic(), **where, worker=self.boot.worker, **fields)
        self._later()
        self.records.append(record)

    # -- main loop -----------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self.inbox.put_nowait(wire.recv(self.conn))
        except (EOFError, OSError, ValueError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.inbox.put_nowait(None)

    async def run(self) -> None:
        """Serve the controller's commands until it says exit (or is gone)."""
        self.send(wire.Ready())
        asyncio.get_running_loop().add_reader(self.conn.fileno(), self._readable)
        self.spawn(self._watch())
        while True:
            message = await self.inbox.get()
            if message is None:  # the controller is gone: nothing left to serve
                self.finish(3)
            elif type(message) in self.commands:
                self.commands[type(message)](message)
            else:
                unexpected = f"unexpected control message {message.TYPE}"
                self.emit(Error, message=unexpected, source=Source.HARNESS)

    def finish(self, code: int) -> None:
        """End the process now, as MultiWorld's cleanup() does (threads may be stuck)."""
        with contextlib.suppress(OSError):
            self.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    async def _watch(self) -> None:
        """Report worlds the runtime's broken-world query has turned true for, and this
        event loop running late (a ``lag``: the checks weigh it against the CPU's load)."""
        last = time.monotonic()
        while True:
            for run in list(self.worlds.values()):
                if run.reported or run.removed or run.query_failed:
                    continue
                try:
                    broken = self.runtime.is_broken(run.name)
                except Exception as exc:  # judged as an error; the query is not asked again
                    run.query_failed = True
                    self._runtime_error(run, "is_broken", exc)
                    continue
                if broken:
                    self._broken(run, "the runtime's broken-world query turned true")
            await asyncio.sleep(self.boot.watch_s)
            now = time.monotonic()
            late = now - last - self.boot.watch_s
            if late >= LAG_S and self.t0 is not None:
                self.emit(Lag, source=Source.AGENT, lag_s=round(late, 3))
            last = now

    def _broken(self, run: WorldRun, reason: str, **how: Any) -> None:
        if run.reported or run.removed:
            return
        run.reported = True
        self.emit(Broken, run, reason=reason[:300], **how)

    def _runtime_error(self, run: WorldRun | None, op: str, exc: BaseException) -> None:
        """The runtime raised something that is not its failure signal (or raised while
        not in a world op): an ``error`` record the ``errors`` property judges."""
        kind = type(exc).__name__
        message = f"{op} raised {kind}: {exc}"[:300]
        self.emit(Error, run, message=message, source=Source.RUNTIME, op=op, exception=kind)
        traceback.print_exception(exc)

    # -- commands ------------------------------------------------------------------------

    def _on_init_world(self, message: wire.InitWorld) -> None:
        self.spawn(self._form(message))

    async def _form(self, message: wire.InitWorld) -> None:
        world_id = WorldId(message.world, message.life)
        run = WorldRun(
            message.world, message.life, message.rank, message.members, world_id.instance
        )
        port, addr = message.port, message.addr or self.boot.store_addr
        if port is None:  # rank 0 hosts the store on its host: pick its port now
            try:
                port = free_port(self.boot.store_addr)
            except OSError as exc:  # the harness's failure, not the runtime's
                self.emit(Error, run, message=f"no free port: {exc!r}"[:300], source=Source.HARNESS)
                return
            self.send(wire.Port(message.world, message.life, port, self.boot.store_addr))
        try:
            await self.runtime.init_world(
                run.name,
                run.rank,
                run.size,
                addr,
                port,
                self.boot.device,
                run.members,
            )
        except Exception as exc:
            self._runtime_error(run, "init_world", exc)
            return
        self.worlds[(run.world, run.life)] = run
        self.emit(Joined, run)
        if self.t0 is not None:
            self._launch(run, time.monotonic())

    def _on_start(self, message: wire.Start) -> None:
        self.t0 = float(message.t0)
        for run in self.worlds.values():
            self._launch(run, self.t0)
        if self.node is not None:  # the leader admits requests until recording stops
            self.node.start(self.spawn, lambda: not self.recording)

    def _launch(self, run: WorldRun, first_at: float) -> None:
        w, spec = self.workloads, self.boot.workload
        interval = spec.get("interval_ms", 20.0) / 1000  # serve has none: a pace unused
        pace = w.Pace(interval, next_at=first_at - interval, slowness=self.slowness)
        run.ctl = w.Control()
        if self.node is not None:
            run.task = self.spawn(self._work(run, self.node.role_of(run), None, pace))
            return
        payload = w.Payload(run.name, spec["tensor_bytes"], self.boot.device)
        run.task = self.spawn(self._work(run, w.ROLES[spec["kind"]], payload, pace))

    async def _work(self, run: WorldRun, role: Any, payload: Any, pace: Any) -> None:
        members = run.members

        def record(seq: int, ok: bool, peer: int | None, latency_s: float) -> None:
            latency = round(latency_s, 6)
            if peer is None:
                self.emit(Op, run, seq=seq, ok=ok, latency_s=latency)
            else:
                self.emit(Op, run, seq=seq, ok=ok, peer=members[peer], latency_s=latency)

        try:
            await role(_Link(self.runtime, run, self.gpu), payload, pace, run.ctl, record)
        except Raised as raised:
            exc, kind = raised.error, type(raised.error).__name__
            if self.runtime.is_failure(exc):
                reason = f"the runtime raised {kind}: {exc}"
                self._broken(run, reason, raised=kind, op=raised.op)
            else:
                self._runtime_error(run, raised.op, exc)
        except Exception as exc:  # mwsim's own workload code failed: the harness's fault
            message = f"workload failed: {exc!r}"[:300]
            self.emit(Error, run, message=message, source=Source.HARNESS)
            traceback.print_exc()
        finally:
            run.done.set()

    def _on_set_delay(self, message: wire.SetDelay) -> None:
        self.slowness.delay_s = message.delay_ms / 1000
        until = message.until
        self.slowness.until = float("inf") if until is None else float(until)
        self.send(wire.Ack(wire.ack_of(message)))

    def _current(self, world: str) -> WorldRun | None:
        runs = [run for (name, _), run in self.worlds.items() if name == world]
        return max(runs, key=lambda r: r.life) if runs else None

    def _on_remove_world(self, message: wire.RemoveWorld) -> None:
        run = self._current(message.world)
        if run is not None:
            self.spawn(self._remove(run))

    async def _remove(self, run: WorldRun) -> None:
        if run.ctl is not None:
            run.ctl.stop = True
        if run.task is not None:
            # the stop markers end the workload on every member; a broken world ends too
            ended = await _until(lambda: run.done.is_set() or run.reported, REMOVE_GRACE_S)
            if not ended:
                self.emit(Error, run, message="remove_world: the workload did not wind down")
        run.removed = True
        if self._remove_world(run):
            self.emit(Left, run)

    def _remove_world(self, run: WorldRun) -> bool:
        """Ask the runtime to remove the world; False (recorded) if it raised."""
        try:
            self.runtime.remove_world(run.name)
        except Exception as exc:
            self._runtime_error(run, "remove_world", exc)
            return False
        return True

    def _on_leave(self, message: wire.Leave) -> None:
        self.send(wire.Ack(wire.ack_of(message)))  # the leave is the runtime's from here on
        self.flush()
        self.spawn(self._leave())

    async def _leave(self) -> None:
        """Stop every world at its next op boundary, leave them, and exit cleanly (a
        world the runtime fails to remove is recorded as an error)."""
        runs = list(self.worlds.values())
        for run in runs:
            if run.ctl is not None:
                run.ctl.halt = True
        started = [run for run in runs if run.task is not None]
        await _until(lambda: all(r.done.is_set() or r.reported for r in started), LEAVE_GRACE_S)
        for run in runs:
            run.removed = True
            if self._remove_world(run):
                self.emit(Left, run)
        self.finish(0)

    def _on_gpu_fault(self, message: wire.GpuFault) -> None:
        self.spawn(self._gpu_fault(message))

    async def _gpu_fault(self, message: wire.GpuFault) -> None:
        """Act on this worker's GPU; acknowledged once the GPU shows it (never, if not)."""
        try:
            shown = await self.gpu.act(
                Kind(message.do), message.ending, message.for_s, message.factor
            )
        except Exception as exc:  # the harness could not inject it: unconfirmed, and why
            self.emit(Error, message=f"{message.do}: {exc!r}"[:300], source=Source.HARNESS)
            traceback.print_exc()
            return
        if shown:
            self.send(wire.Ack(wire.ack_of(message)))

    def _on_stop(self, _message: wire.Stop) -> None:
        self.recording = False
        self.send(wire.Stopped())

    def _on_exit(self, _message: wire.Exit) -> None:
        self.finish(0)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process if its parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


async def _serve(boot: Boot, conn: Connection) -> None:
    from mwsim import workloads  # imports torch: after the controller knows we live

    context = runtimes.Context(
        boot.worker,
        boot.backend,
        boot.store_addr,
        tuple(boot.peers),
        boot.rendezvous,
        boot.rendezvous_addr,
    )
    cls = runtimes.load(boot.runtime)
    cls.prepare()
    try:
        runtime = cls(context)  # inside the loop, as MultiWorld needs
        await runtime.start()
    except Exception as exc:
        raise StartRaised(exc) from exc
    await Agent(boot, conn, runtime, workloads).run()


class StartRaised(Exception):
    """The runtime raised while starting in this process (its doing, not the harness's)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _start_error(boot: Boot, error: Exception) -> wire.Events:
    """The ``error`` record of a runtime that could not start (judged by ``errors``)."""
    kind = type(error).__name__
    record = Error(
        t=time.monotonic(),
        worker=boot.worker,
        message=f"start raised {kind}: {error}"[:300],
        source=Source.RUNTIME,
        op="start",
        exception=kind,
    )
    return wire.Events((record,))


def serve(boot: Boot) -> None:
    """Be the agent ``boot`` describes until the controller says exit; never returns."""
    die_with_parent(boot.parent_pid)
    if boot.netns is not None:  # from now on every socket of this process is on its host
        setns(boot.netns)
    if boot.ifname is not None:
        os.environ["GLOO_SOCKET_IFNAME"] = os.environ["NCCL_SOCKET_IFNAME"] = boot.ifname
    if boot.netns is not None:  # NCCL tells hosts apart by this: each emulated host is one,
        os.environ["NCCL_HOSTID"] = boot.netns  # so its traffic crosses the emulated links
    conn = channel.connect(boot.controller, bytes.fromhex(boot.authkey))
    wire.send(conn, wire.Hello(boot.worker, os.getpid(), os.environ.get(NODE_ENV)))
    code = 0
    try:
        asyncio.run(_serve(boot, conn))
    except StartRaised as raised:
        traceback.print_exception(raised.error)
        with contextlib.suppress(OSError):
            wire.send(conn, _start_error(boot, raised.error))
        code = 1
    except BaseException as exc:  # report, then end without waiting for stuck threads
        message = "".join(traceback.format_exception(exc))
        sys.stderr.write(message)
        with contextlib.suppress(OSError):
            wire.send(conn, wire.Fatal(message[-2000:]))
        code = 1
    sys.stderr.flush()
    os._exit(code)
