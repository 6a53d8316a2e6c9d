"""One worker process of a real replay: the runtime, one workload task per world, reports.

Started by the controller as ``python -m mwsim.replay.agent`` with its bootstrap on
stdin. Each world runs in its own task so one stuck world cannot stall the others; a
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
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection
from typing import Any

from mwsim import runtimes
from mwsim.replay import protocol
from mwsim.replay.processes import free_port
from mwsim.replay.protocol import Boot

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


def instance_name(world: str, life: int) -> str:
    """The runtime's name for a world incarnation (MultiWorld cannot reuse a name)."""
    return world if life == 0 else f"{world}~{life}"


@dataclass
class WorldRun:
    """One world at this worker: its link to the runtime and the state of its workload."""

    world: str
    life: int
    rank: int
    members: list[str]
    name: str
    task: asyncio.Task | None = None
    reported: bool = False  # broken already reported
    removed: bool = False  # removed gracefully by us
    ctl: Any = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def size(self) -> int:
        return len(self.members)


class _Link:
    """A ``workloads.Link`` over the runtime for one world."""

    def __init__(self, runtime: runtimes.Runtime, run: WorldRun) -> None:
        self.runtime, self.name = runtime, run.name
        self.rank, self.size = run.rank, run.size

    async def send(self, tensor: Any, dst: int) -> None:
        await self.runtime.send(self.name, tensor, dst)

    async def recv(self, tensor: Any, src: int) -> None:
        await self.runtime.recv(self.name, tensor, src)

    async def all_reduce(self, tensor: Any) -> None:
        await self.runtime.all_reduce(self.name, tensor)


class Agent:
    """The life of one worker process, driven by the controller's commands."""

    def __init__(self, boot: Boot, conn: Connection) -> None:
        self.boot, self.conn = boot, conn
        self.worlds: dict[tuple[str, int], WorldRun] = {}
        self.t0: float | None = None
        self.recording = True
        self.outbox: list[dict[str, Any]] = []
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Any) -> asyncio.Task:
        """Start a task and hold a reference to it until it ends."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- reporting -----------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; everything queued goes out at the end of this loop iteration."""
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outbox.append(message)

    def flush(self) -> None:
        if not self.outbox:
            return
        batch, self.outbox = self.outbox, []
        events = [m for m in batch if m["type"] == "event"]
        for message in batch:
            if message["type"] != "event":
                protocol.send(self.conn, message)
        if events:
            protocol.send(self.conn, {"type": "events", "events": events})

    def emit(self, kind: str, run: WorldRun | None = None, **fields: Any) -> None:
        if not self.recording:
            return
        record = {"type": "event", "kind": kind, "mono": time.monotonic()}
        if run is not None:
            record["world"] = run.world
            if run.life:
                record["life"] = run.life
        record["worker"] = self.boot.worker
        record.update(fields)
        self.send(record)

    # -- main loop -----------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self.inbox.put_nowait(protocol.recv(self.conn))
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.inbox.put_nowait(None)

    async def run(self) -> None:
        from mwsim import workloads  # imports torch: after the controller knows we live

        self.workloads = workloads
        self.slowness = workloads.Slowness()
        loop = asyncio.get_running_loop()
        boot = self.boot
        context = runtimes.Context(
            boot.worker, boot.backend, boot.store_addr, tuple(boot.peers), boot.rendezvous
        )
        self.runtime = runtimes.load(boot.runtime)(context)
        await self.runtime.start()
        self.send({"type": "ready"})
        loop.add_reader(self.conn.fileno(), self._readable)
        self.spawn(self._watch())
        while True:
            message = await self.inbox.get()
            if message is None:  # the controller is gone: nothing left to serve
                self.finish(3)
            getattr(self, "_on_" + message["type"])(message)

    def finish(self, code: int) -> None:
        """End the process now, as MultiWorld's cleanup() does (threads may be stuck)."""
        with contextlib.suppress(OSError):
            self.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    async def _watch(self) -> None:
        """Report worlds the runtime's broken-world query has turned true for."""
        while True:
            for run in list(self.worlds.values()):
                if not (run.reported or run.removed) and self.runtime.is_broken(run.name):
                    self._broken(run, "the runtime's broken-world query turned true")
            await asyncio.sleep(WATCH_PERIOD_S)

    def _broken(self, run: WorldRun, reason: str) -> None:
        if run.reported or run.removed:
            return
        run.reported = True
        self.emit("broken", run, reason=reason[:300])

    # -- commands ------------------------------------------------------------------------

    def _on_init_world(self, message: dict[str, Any]) -> None:
        self.spawn(self._form(message))

    async def _form(self, message: dict[str, Any]) -> None:
        world, life, rank = message["world"], message["life"], message["rank"]
        run = WorldRun(world, life, rank, message["members"], instance_name(world, life))
        port = message.get("port")
        if port is None:  # rank 0 hosts the store: pick its port now
            port = free_port(self.boot.store_addr)
            self.send({"type": "port", "world": world, "life": life, "port": port})
        try:
            await self.runtime.init_world(
                run.name, rank, run.size, self.boot.store_addr, port, self.boot.device, run.members
            )
        except Exception as exc:
            self.emit("error", run, message=f"forming the world failed: {exc!r}"[:300])
            return
        self.worlds[(world, life)] = run
        self.emit("joined", run)
        if self.t0 is not None:
            self._launch(run, time.monotonic())

    def _on_start(self, message: dict[str, Any]) -> None:
        self.t0 = float(message["t0"])
        for run in self.worlds.values():
            self._launch(run, self.t0)

    def _launch(self, run: WorldRun, first_at: float) -> None:
        w, spec = self.workloads, self.boot.workload
        interval = spec["interval_ms"] / 1000
        pace = w.Pace(interval, next_at=first_at - interval, slowness=self.slowness)
        run.ctl = w.Control()
        payload = w.Payload(run.name, spec["tensor_bytes"], self.boot.device)
        run.task = self.spawn(self._work(run, w.ROLES[spec["kind"]], payload, pace))

    async def _work(self, run: WorldRun, role: Any, payload: Any, pace: Any) -> None:
        members = run.members

        def record(seq: int, ok: bool, peer: int | None) -> None:
            if peer is None:
                self.emit("op", run, seq=seq, ok=ok)
            else:
                self.emit("op", run, seq=seq, ok=ok, peer=members[peer])

        try:
            await role(_Link(self.runtime, run), payload, pace, run.ctl, record)
        except Exception as exc:
            if self.runtime.is_failure(exc):
                self._broken(run, f"the runtime raised {type(exc).__name__}: {exc}")
            else:
                self.emit("error", run, message=f"workload failed: {exc!r}"[:300])
                traceback.print_exc()
        finally:
            run.done.set()

    def _on_slow(self, message: dict[str, Any]) -> None:
        self.slowness.delay_s = message["delay_ms"] / 1000
        until = message["until"]
        self.slowness.until = float("inf") if until is None else float(until)
        self.send({"type": "ack", "what": "slow"})

    def _current(self, world: str) -> WorldRun | None:
        runs = [run for (name, _), run in self.worlds.items() if name == world]
        return max(runs, key=lambda r: r.life) if runs else None

    def _on_remove_world(self, message: dict[str, Any]) -> None:
        run = self._current(message["world"])
        if run is not None:
            self.spawn(self._remove(run))

    async def _remove(self, run: WorldRun) -> None:
        if run.ctl is not None:
            run.ctl.stop = True
        if run.task is not None:
            # the stop markers end the workload on every member; a broken world ends too
            ended = await _until(lambda: run.done.is_set() or run.reported, REMOVE_GRACE_S)
            if not ended:
                self.emit("error", run, message="remove_world: the workload did not wind down")
        run.removed = True
        self.runtime.remove_world(run.name)
        self.emit("left", run)

    def _on_leave(self, _message: dict[str, Any]) -> None:
        self.spawn(self._leave())

    async def _leave(self) -> None:
        """Stop every world at its next op boundary, leave them, and exit cleanly."""
        runs = list(self.worlds.values())
        for run in runs:
            if run.ctl is not None:
                run.ctl.halt = True
        started = [run for run in runs if run.task is not None]
        await _until(lambda: all(r.done.is_set() or r.reported for r in started), LEAVE_GRACE_S)
        for run in runs:
            run.removed = True
            self.runtime.remove_world(run.name)
            self.emit("left", run)
        self.finish(0)

    def _on_stop(self, _message: dict[str, Any]) -> None:
        self.recording = False
        self.send({"type": "stopped"})

    def _on_exit(self, _message: dict[str, Any]) -> None:
        self.finish(0)


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process if the controller dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def main() -> None:
    """Entry point of ``python -m mwsim.replay.agent``: the bootstrap comes on stdin."""
    serve(Boot.from_line(sys.stdin.readline()))


def serve(boot: Boot) -> None:
    """Be the agent ``boot`` describes until the controller says exit; never returns."""
    _die_with_parent(boot.parent_pid)
    conn = Client(boot.controller, authkey=bytes.fromhex(boot.authkey))
    protocol.send(conn, {"type": "hello", "worker": boot.worker, "pid": os.getpid()})
    code = 0
    try:
        asyncio.run(Agent(boot, conn).run())
    except BaseException as exc:  # report, then end without waiting for stuck threads
        message = "".join(traceback.format_exception(exc))
        sys.stderr.write(message)
        with contextlib.suppress(OSError):
            protocol.send(conn, {"type": "fatal", "message": message[-2000:]})
        code = 1
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
