"""Upstream MultiWorld (PyPI ``multiworld``) as the system under test."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mwsim.runtimes import Runtime


class MultiWorldRuntime(Runtime):
    """Each world is a MultiWorld world; its watchdog and exceptions report failures."""

    name = "multiworld"

    @classmethod
    def unavailable(cls, backend: str, devices: int) -> str | None:
        spec = importlib.util.find_spec("multiworld")
        if spec is None or not spec.submodule_search_locations:
            return "the multiworld package is not installed (run: make install)"
        marker = Path(next(iter(spec.submodule_search_locations))) / "init.txt"
        if marker.read_text().strip() != "true":
            return "multiworld's one-time torch patch has not run (run: make install)"
        return super().unavailable(backend, devices)

    #: Whether MultiWorld's watchdog runs (a mutant turns it off).
    watchdog = True

    async def start(self) -> None:
        from multiworld.communicator import BrokenWorldException
        from multiworld.manager import WorldManager

        self._manager = WorldManager(enable_monitor=self.watchdog)
        self._comm = self._manager.communicator
        self._broken = BrokenWorldException

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
        import torch

        await self._manager.initialize_world(
            world,
            rank,
            size,
            backend=self.backend,
            addr=addr,
            port=port,
            device=torch.device(device),
        )

    def remove_world(self, world: str) -> None:
        with contextlib.suppress(ValueError):  # already removed, e.g. by the watchdog
            self._manager.remove_world(world)

    async def send(self, world: str, tensor: Any, dst: int) -> None:
        await self._comm.send(tensor, dst, world)

    async def recv(self, world: str, tensor: Any, src: int) -> None:
        await self._comm.recv(tensor, src, world)

    async def all_reduce(self, world: str, tensor: Any) -> None:
        await self._comm.all_reduce(tensor, world_name=world)

    def is_broken(self, world: str) -> bool:
        return bool(self._comm.is_broken(world))

    def is_failure(self, exc: BaseException) -> bool:
        return isinstance(exc, (self._broken, RuntimeError))
