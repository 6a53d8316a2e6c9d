"""The paper's baseline: every worker in one plain ``torch.distributed`` process group.

Scenario worlds become pairs or sets of ranks inside that single world (tagged so their
messages never mix). That is what a deployment without MultiWorld does, and what it
costs: a failure anywhere breaks the one world for everybody (as an NCCL communicator
abort does), the world cannot grow (a worker that was not there at bring-up cannot join),
and nothing watches for a silent peer. mwsim's checks and fuzzers must catch it.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import zlib
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from mwsim.runtimes import INTERFACE, Runtime, package_info


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if not done.done():
        if error is None:
            done.set_result(result)
        else:
            done.set_exception(error)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run a blocking call in its own thread; it is never cancelled (as in MultiWorld)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def call() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task
            loop.call_soon_threadsafe(_settle, done, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, done, result, None)

    threading.Thread(target=call, daemon=True).start()
    return await done


class TorchRuntime(Runtime):
    """One process group for the whole deployment."""

    name = "torch"
    interface = INTERFACE
    needs_rendezvous = True
    preload = ("torch.distributed",)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return package_info("torch")

    async def start(self) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.failed: str | None = None
        self.worlds: dict[str, tuple[list[int], int]] = {}  # world -> (global ranks, tag)
        ctx = self.context
        if ctx.worker not in ctx.peers or ctx.rendezvous is None:
            return  # started after bring-up: a single world has no place for it

        def join_the_world() -> None:
            rank = ctx.peers.index(ctx.worker)
            addr = ctx.rendezvous_addr or ctx.addr
            store = dist.TCPStore(
                addr, ctx.rendezvous, len(ctx.peers), rank == 0, timedelta(seconds=60)
            )
            dist.init_process_group("gloo", store=store, rank=rank, world_size=len(ctx.peers))

        await _in_thread(join_the_world)

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
        outsiders = [m for m in members if m not in self.context.peers]
        if outsiders:
            raise RuntimeError(
                f"a single world cannot grow: {', '.join(outsiders)} was not there at bring-up"
            )
        ranks = [self.context.peers.index(m) for m in members]
        self.worlds[world] = (ranks, 1 + zlib.crc32(world.encode()) % 65_000)

    def remove_world(self, world: str) -> None:
        self.worlds.pop(world, None)

    async def _op(self, fn: Callable[[], Any]) -> Any:
        if self.failed:
            raise RuntimeError(f"the single world is broken: {self.failed}")
        try:
            return await _in_thread(fn)
        except RuntimeError as exc:
            self.failed = self.failed or str(exc)[:200]
            raise

    async def send(self, world: str, tensor: Any, dst: int) -> None:
        ranks, tag = self.worlds[world]
        await self._op(lambda: self.dist.send(tensor, ranks[dst], tag=tag))

    async def recv(self, world: str, tensor: Any, src: int) -> None:
        ranks, tag = self.worlds[world]
        await self._op(lambda: self.dist.recv(tensor, ranks[src], tag=tag))

    async def all_reduce(self, world: str, tensor: Any) -> None:
        """Point to point: everyone sends to the world's rank 0, which sums and sends back."""
        ranks, tag = self.worlds[world]
        me = ranks.index(self.context.peers.index(self.context.worker))
        if me != 0:
            await self._op(lambda: self.dist.send(tensor, ranks[0], tag=tag))
            await self._op(lambda: self.dist.recv(tensor, ranks[0], tag=tag))
            return
        part = tensor.clone()
        for peer in ranks[1:]:
            await self._op(functools.partial(self.dist.recv, part, peer, tag=tag))
            tensor += part
        for peer in ranks[1:]:
            await self._op(functools.partial(self.dist.send, tensor, peer, tag=tag))

    def is_broken(self, world: str) -> bool:
        return self.failed is not None  # one world: broken for all or for none
