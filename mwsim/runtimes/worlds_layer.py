"""MultiWorld's torch surface on a torch it has no patch for: one process group per world.

MultiWorld 0.2.3 patches ``torch/distributed/distributed_c10d.py`` of torch 2.4.0 (or
2.2.1) so that c10d keeps its state per *world*: ``init_process_group(..., world_name=)``
makes a world's default process group, the ops take the world's name as a trailing
argument, and ``_World``, ``_worlds`` and ``DEFAULT_WORLD_NAME`` name that state. This
module gives the same surface on any other torch, without touching its files: installed
in a process before MultiWorld is imported (``install``), it adds those names to
``torch.distributed`` and wraps the functions MultiWorld calls, so that a named world's
call goes to that world's own backend, built from the world's store alone (no global c10d
state), and the default world's to torch itself. MultiWorld's first-import self-patching
is neutralised (``neutralise_self_patch``). MultiWorld's own code, imported from its
installed wheel, runs unmodified on top.

What MultiWorld uses and this layer gives: ``init_process_group`` (gloo or nccl, with a
store), ``send``/``recv``/``isend``/``irecv``, ``broadcast``, ``all_reduce``, ``reduce``,
``all_gather``, ``gather``, ``scatter``, ``destroy_process_group(name=)``, ``_World``,
``_worlds``, ``DEFAULT_WORLD_NAME`` and ``Work`` (torch's own).
"""

from __future__ import annotations

import sys
import threading
import types
from datetime import timedelta
from typing import Any

#: The name of torch's own, unnamed world.
DEFAULT_WORLD_NAME = ""

#: The functions of ``torch.distributed`` this layer wraps (their world-aware form).
WRAPPED = (
    "init_process_group",
    "destroy_process_group",
    "isend",
    "irecv",
    "send",
    "recv",
    "broadcast",
    "all_reduce",
    "reduce",
    "all_gather",
    "gather",
    "scatter",
)

_MARK = "_mwsim_worlds_layer"
_lock = threading.Lock()


class World:
    """One world: its backend (a process group of its own), rank and size."""

    def __init__(self, name: str = DEFAULT_WORLD_NAME) -> None:
        self.name = name
        self.backend: Any = None  # torch's Backend (ProcessGroupGloo, ProcessGroupNCCL)
        self.rank = -1
        self.size = -1
        self.store: Any = None


def installed() -> bool:
    """Is the layer in this process's ``torch.distributed``?"""
    dist = sys.modules.get("torch.distributed")
    return dist is not None and getattr(dist, _MARK, False)


def neutralise_self_patch() -> None:
    """MultiWorld's first import patches torch's files and exits the process unless its
    ``init.txt`` says it has; here nothing is to be patched: its ``post_setup`` becomes a
    module whose ``configure_once`` does nothing (set before ``multiworld`` is imported)."""
    if "multiworld.post_setup" in sys.modules:
        return
    stub = types.ModuleType("multiworld.post_setup")
    stub.__doc__ = "mwsim: MultiWorld's self-patching, neutralised (torch is not patched)."
    stub.configure_once = lambda: None  # type: ignore[attr-defined]
    sys.modules["multiworld.post_setup"] = stub


def install() -> None:
    """Give ``torch.distributed`` MultiWorld's per-world surface (idempotent); then
    neutralise MultiWorld's self-patching."""
    import torch.distributed as dist

    with _lock:
        if getattr(dist, _MARK, False):
            return
        if hasattr(dist, "_worlds"):
            raise RuntimeError("torch.distributed already has worlds (MultiWorld's own patch)")
        worlds: dict[str, World] = {DEFAULT_WORLD_NAME: World()}
        originals = {name: getattr(dist, name) for name in WRAPPED}
        for name, fn in _wrappers(dist, worlds, originals).items():
            fn.__name__ = fn.__qualname__ = name
            fn.__doc__ = f"``torch.distributed.{name}`` with a world (mwsim's worlds layer)."
            vars(dist)[name] = fn
        names = {"DEFAULT_WORLD_NAME": DEFAULT_WORLD_NAME, "_World": World, "_worlds": worlds}
        vars(dist).update(names, **{_MARK: True})
    neutralise_self_patch()


def _wrappers(dist: Any, worlds: dict[str, World], originals: dict[str, Any]) -> dict[str, Any]:
    """The world-aware functions: a named world's call goes to its backend, the default
    world's to torch's own function (positional arguments as MultiWorld passes them)."""

    def world_of(name: str) -> World:
        world = worlds.get(name)
        if world is None or world.backend is None:
            raise ValueError(f"world {name!r} is not initialized")
        return world

    def done(work: Any, async_op: bool) -> Any:
        if async_op:
            return work
        work.wait()
        return None

    def init_process_group(
        backend: Any = None,
        init_method: Any = None,
        timeout: timedelta | None = None,
        world_size: int = -1,
        rank: int = -1,
        store: Any = None,
        group_name: str = "",
        pg_options: Any = None,
        world_name: str = DEFAULT_WORLD_NAME,
        **more: Any,
    ) -> None:
        if world_name == DEFAULT_WORLD_NAME:
            kwargs = {"init_method": init_method, "timeout": timeout, "world_size": world_size}
            kwargs.update(rank=rank, store=store, group_name=group_name, pg_options=pg_options)
            originals["init_process_group"](backend, **kwargs, **more)
            return
        if store is None:
            raise ValueError("a world needs its store (init_process_group(store=...))")
        world = worlds.get(world_name)
        if world is None:  # MultiWorld's manager adds it first; be lenient otherwise
            world = worlds[world_name] = World(world_name)
        if world.backend is not None:
            raise ValueError(f"world {world_name!r} is already initialized")
        prefix = dist.PrefixStore(f"mwsim-world/{world_name}/", store)
        wait = timeout or timedelta(minutes=30)
        kind = str(backend or "gloo").lower()
        if kind == "gloo":
            made = dist.ProcessGroupGloo(prefix, rank, world_size, wait)
        elif kind == "nccl":
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = wait
            made = dist.ProcessGroupNCCL(prefix, rank, world_size, options)
        else:
            raise ValueError(f"backend {backend!r} is not supported by mwsim's worlds layer")
        world.backend, world.rank, world.size, world.store = made, rank, world_size, store

    def destroy_process_group(group: Any = None, name: str = DEFAULT_WORLD_NAME) -> None:
        if name == DEFAULT_WORLD_NAME:
            originals["destroy_process_group"](group)
            return
        world = worlds.pop(name, None)
        if world is not None and world.backend is not None:
            shutdown = getattr(world.backend, "shutdown", None)
            if shutdown is not None:
                shutdown()

    def isend(
        tensor: Any, dst: int, group: Any = None, tag: int = 0, name: str = DEFAULT_WORLD_NAME
    ) -> Any:
        if name == DEFAULT_WORLD_NAME:
            return originals["isend"](tensor, dst, group=group, tag=tag)
        return world_of(name).backend.send([tensor], dst, tag)

    def irecv(
        tensor: Any,
        src: int | None = None,
        group: Any = None,
        tag: int = 0,
        name: str = DEFAULT_WORLD_NAME,
    ) -> Any:
        if name == DEFAULT_WORLD_NAME:
            return originals["irecv"](tensor, src, group=group, tag=tag)
        backend = world_of(name).backend
        if src is None:
            return backend.recv_anysource([tensor], tag)
        return backend.recv([tensor], src, tag)

    def send(
        tensor: Any, dst: int, group: Any = None, tag: int = 0, name: str = DEFAULT_WORLD_NAME
    ) -> None:
        if name == DEFAULT_WORLD_NAME:
            originals["send"](tensor, dst, group=group, tag=tag)
            return
        world_of(name).backend.send([tensor], dst, tag).wait()

    def recv(
        tensor: Any,
        src: int | None = None,
        group: Any = None,
        tag: int = 0,
        name: str = DEFAULT_WORLD_NAME,
    ) -> int:
        if name == DEFAULT_WORLD_NAME:
            return int(originals["recv"](tensor, src, group=group, tag=tag))
        work = irecv(tensor, src, group, tag, name)
        work.wait()
        return int(src if src is not None else work._source_rank())

    def broadcast(
        tensor: Any,
        src: int,
        group: Any = None,
        async_op: bool = False,
        name: str = DEFAULT_WORLD_NAME,
    ) -> Any:
        if name == DEFAULT_WORLD_NAME:
            return originals["broadcast"](tensor, src, group=group, async_op=async_op)
        options = dist.BroadcastOptions()
        options.rootRank, options.rootTensor = src, 0
        return done(world_of(name).backend.broadcast([tensor], options), async_op)

    def all_reduce(
        tensor: Any,
        op: Any = None,
        group: Any = None,
        async_op: bool = False,
        name: str = DEFAULT_WORLD_NAME,
    ) -> Any:
        op = dist.ReduceOp.SUM if op is None else op
        if name == DEFAULT_WORLD_NAME:
            return originals["all_reduce"](tensor, op, group=group, async_op=async_op)
        options = dist.AllreduceOptions()
        options.reduceOp = op
        return done(world_of(name).backend.allreduce([tensor], options), async_op)

    def reduce(
        tensor: Any,
        dst: int,
        op: Any = None,
        group: Any = None,
        async_op: bool = False,
        name: str = DEFAULT_WORLD_NAME,
    ) -> Any:
        op = dist.ReduceOp.SUM if op is None else op
        if name == DEFAULT_WORLD_NAME:
            return originals["reduce"](tensor, dst, op, group=group, async_op=async_op)
        options = dist.ReduceOptions()
        options.reduceOp, options.rootRank, options.rootTensor = op, dst, 0
        return done(world_of(name).backend.reduce([tensor], options), async_op)

    def all_gather(
        tensor_list: list[Any],
        tensor: Any,
        group: Any = None,
        async_op: bool = False,
        name: str = DEFAULT_WORLD_NAME,
    ) -> Any:
        if name == DEFAULT_WORLD_NAME:
            return originals["all_gather"](tensor_list, tensor, group=group, async_op=async_op)
        return done(world_of(name).backend.allgather([tensor_list], [tensor]), async_op)

    def gather(
        tensor: Any,
        gather_list: list[Any] | None = None,
        dst: int = 0,
        group: Any = None,
        async_op: bool = False,
        name: str = DEFAULT_WORLD_NAME,
    ) -> Any:
        if name == DEFAULT_WORLD_NAME:
            return originals["gather"](tensor, gather_list, dst, group=group, async_op=async_op)
        world = world_of(name)
        options = dist.GatherOptions()
        options.rootRank = dst
        outputs = [gather_list or []] if world.rank == dst else []
        return done(world.backend.gather(outputs, [tensor], options), async_op)

    def scatter(
        tensor: Any,
        scatter_list: list[Any] | None = None,
        src: int = 0,
        group: Any = None,
        async_op: bool = False,
        name: str = DEFAULT_WORLD_NAME,
    ) -> Any:
        if name == DEFAULT_WORLD_NAME:
            return originals["scatter"](tensor, scatter_list, src, group=group, async_op=async_op)
        world = world_of(name)
        options = dist.ScatterOptions()
        options.rootRank = src
        inputs = [scatter_list or []] if world.rank == src else []
        return done(world.backend.scatter([tensor], inputs, options), async_op)

    made = {
        "init_process_group": init_process_group,
        "destroy_process_group": destroy_process_group,
        "isend": isend,
        "irecv": irecv,
        "send": send,
        "recv": recv,
        "broadcast": broadcast,
        "all_reduce": all_reduce,
        "reduce": reduce,
        "all_gather": all_gather,
        "gather": gather,
        "scatter": scatter,
    }
    assert set(made) == set(WRAPPED)
    return made
