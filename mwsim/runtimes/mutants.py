"""Planted-bug runtimes ("mutants"): upstream MultiWorld with one realistic bug each.

They are selectable like any runtime (``--runtime mutant-stop-all``) and exist to show
that mwsim's checks and fuzzers find such bugs on live processes. Most stay quiet until the
kind of event that exposes it happens, so finding it takes a fuzzer, not luck; the
``TwoBugsMutant`` has one bug that shows in nearly every run, hiding nothing else. Two
fail while the deployment comes up: ``NeverServesMutant`` and ``SlowJoinKillMutant``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

from mwsim.runtimes import Unsupported
from mwsim.runtimes.multiworld import MultiWorldRuntime


class _Tracking(MultiWorldRuntime):
    """Remembers this process's worlds, the ones it removed, and whether ops have run."""

    async def start(self) -> None:
        await super().start()
        self.formed: list[str] = []
        self.removed: set[str] = set()
        self.working = False  # an op has run: later worlds are formed while others serve

    async def init_world(
        self,
        world: str,
        rank: int,
        size: int,
        addr: str,
        port: int,
        device: str,
        members: Sequence[str] = (),
    ) -> None:
        await super().init_world(world, rank, size, addr, port, device, members)
        self.formed.append(world)
        self.formed_late = self.working

    def remove_world(self, world: str) -> None:
        self.removed.add(world)
        super().remove_world(world)

    def live(self) -> list[str]:
        return [w for w in self.formed if w not in self.removed]

    async def send(self, world: str, tensor: Any, dst: int) -> None:
        self.working = True
        await super().send(world, tensor, dst)

    async def recv(self, world: str, tensor: Any, src: int) -> None:
        self.working = True
        await super().recv(world, tensor, src)

    async def all_reduce(self, world: str, tensor: Any) -> None:
        self.working = True
        await super().all_reduce(world, tensor)


class StopAllMutant(_Tracking):
    """Once any of its worlds breaks, it stops all of them (no isolation)."""

    name = "mutant-stop-all"

    def _any_broken(self) -> bool:
        return any(super(StopAllMutant, self).is_broken(w) for w in self.live())

    def is_broken(self, world: str) -> bool:
        return super().is_broken(world) or (world not in self.removed and self._any_broken())

    async def _guard(self, world: str) -> None:
        if self._any_broken():
            raise self._broken(world, "stopped: another world of this process broke")

    async def send(self, world: str, tensor: Any, dst: int) -> None:
        await self._guard(world)
        await super().send(world, tensor, dst)

    async def recv(self, world: str, tensor: Any, src: int) -> None:
        await self._guard(world)
        await super().recv(world, tensor, src)

    async def all_reduce(self, world: str, tensor: Any) -> None:
        await self._guard(world)
        await super().all_reduce(world, tensor)


class NoWatchdogMutant(MultiWorldRuntime):
    """Runs without MultiWorld's watchdog, so a silent (hung) peer is never reported."""

    name = "mutant-no-watchdog"
    watchdog = False


class DropAfterJoinMutant(_Tracking):
    """On a world formed while others already serve, the third message received is
    silently replaced by the fourth: one message is lost after a join."""

    name = "mutant-drop-after-join"

    async def start(self) -> None:
        await super().start()
        self.late: set[str] = set()
        self.received: dict[str, int] = {}

    async def init_world(self, world: str, *args: Any, **kwargs: Any) -> None:
        await super().init_world(world, *args, **kwargs)
        if self.formed_late:
            self.late.add(world)

    async def recv(self, world: str, tensor: Any, src: int) -> None:
        await super().recv(world, tensor, src)
        self.received[world] = self.received.get(world, 0) + 1
        if world in self.late and self.received[world] == 3:
            await super().recv(world, tensor, src)  # the third message is lost


class FalseAlarmMutant(_Tracking):
    """Forming a world while others serve confuses its detector: the oldest other world,
    healthy, is reported broken."""

    name = "mutant-false-alarm"

    async def start(self) -> None:
        await super().start()
        self.flagged: set[str] = set()

    async def init_world(self, world: str, *args: Any, **kwargs: Any) -> None:
        await super().init_world(world, *args, **kwargs)
        others = [w for w in self.live() if w != world]
        if self.formed_late and others:
            self.flagged.add(others[0])

    def is_broken(self, world: str) -> bool:
        return world in self.flagged or super().is_broken(world)


class SelfKillMutant(MultiWorldRuntime):
    """Half a second after one of its worlds breaks, it ends its own process with SIGKILL
    (a watchdog that takes a lost peer for its own hang): workers no fault targeted die."""

    name = "mutant-self-kill"

    def _doom(self) -> None:
        asyncio.get_running_loop().call_later(0.5, os.kill, os.getpid(), signal.SIGKILL)

    def is_broken(self, world: str) -> bool:
        broken = super().is_broken(world)
        if broken:
            self._doom()
        return broken

    def is_failure(self, exc: BaseException) -> bool:
        failure = super().is_failure(exc)
        if failure:
            self._doom()
        return failure


class RemoveRaisesMutant(MultiWorldRuntime):
    """``remove_world`` forgets the world before tearing it down, then looks it up:
    every graceful removal (a leave, a removed world) raises ``KeyError``."""

    name = "mutant-remove-raises"

    def remove_world(self, world: str) -> None:
        raise KeyError(world)


class StuckLeaveMutant(MultiWorldRuntime):
    """``remove_world`` waits for a lock nobody releases: a leave or a removed world never
    completes (the process stays alive, doing nothing)."""

    name = "mutant-stuck-leave"

    def remove_world(self, world: str) -> None:
        threading.Event().wait()


class NeverServesMutant(MultiWorldRuntime):
    """Its worlds form, then no op ever completes (a communicator that waits for a
    completion nobody signals): the deployment comes up and never serves."""

    name = "mutant-never-serves"

    async def send(self, world: str, tensor: Any, dst: int) -> None:
        await asyncio.Event().wait()

    async def recv(self, world: str, tensor: Any, src: int) -> None:
        await asyncio.Event().wait()

    async def all_reduce(self, world: str, tensor: Any) -> None:
        await asyncio.Event().wait()


class SlowJoinKillMutant(MultiWorldRuntime):
    """Its members take half a second to join a world, and a rank 0 forming a world gives
    them a quarter: its watchdog takes the slow join for a hung peer and SIGKILLs its own
    process. A world's rank 0 dies while the world forms (at bring-up, and at every join)."""

    name = "mutant-slow-join-kill"
    join_s = 0.5
    patience_s = 0.25

    async def init_world(
        self,
        world: str,
        rank: int,
        size: int,
        addr: str,
        port: int,
        device: str,
        members: Sequence[str] = (),
    ) -> None:
        if rank > 0:
            await asyncio.sleep(self.join_s)
            await super().init_world(world, rank, size, addr, port, device, members)
            return
        loop = asyncio.get_running_loop()
        doom = loop.call_later(self.patience_s, os.kill, os.getpid(), signal.SIGKILL)
        try:
            await super().init_world(world, rank, size, addr, port, device, members)
        finally:
            doom.cancel()


class NoAllReduceMutant(MultiWorldRuntime):
    """A send/recv-only build: it has no ``all_reduce`` and says so (``supports``), so an
    all-reduce scenario is inconclusive before anything starts."""

    name = "mutant-no-allreduce"
    supports = frozenset({"send", "recv", "remove_world"})

    async def all_reduce(self, world: str, tensor: Any) -> None:
        raise Unsupported(f"runtime {self.name} has no all_reduce")


class TwoBugsMutant(FalseAlarmMutant):
    """Two planted bugs: the fifth message each world receives has its last element
    overwritten (a buffer reused too early: it shows in nearly every run), and forming a
    world while others serve reports the oldest other world broken (only after a join or
    an added world)."""

    name = "mutant-two-bugs"

    async def start(self) -> None:
        await super().start()
        self.received: dict[str, int] = {}

    async def recv(self, world: str, tensor: Any, src: int) -> None:
        await super().recv(world, tensor, src)
        self.received[world] = self.received.get(world, 0) + 1
        if self.received[world] == 5:
            tensor[-1] += 1
