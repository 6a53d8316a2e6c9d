"""Adapters for the system under test, found through the ``mwsim.runtimes`` entry-point group.

An adapter is what one worker process sees of the runtime: join a world, leave it, move
tensors, and say which worlds are broken. Upstream ``multiworld`` is the first and the
default; other implementations plug in by declaring an entry point::

    [project.entry-points."mwsim.runtimes"]
    myruntime = "mypackage.adapter:MyRuntime"
"""

from __future__ import annotations

import abc
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from mwsim.errors import RuntimeNotFound

GROUP = "mwsim.runtimes"


@dataclass(frozen=True)
class Context:
    """What a runtime may know about the deployment it runs in."""

    worker: str
    backend: str
    addr: str  # where this worker's stores listen (its host's address)
    peers: tuple[str, ...] = ()  # the workers there at bring-up, in topology order
    rendezvous: int | None = None  # a deployment-wide port, if the runtime asks for one
    rendezvous_addr: str | None = None  # where it listens (None: ``addr``)


class Runtime(abc.ABC):
    """The system under test in one worker process; created inside the agent's event loop."""

    name: ClassVar[str]
    #: Ask the controller for a deployment-wide port (``Context.rendezvous``).
    needs_rendezvous: ClassVar[bool] = False

    def __init__(self, context: Context) -> None:
        self.context = context
        self.backend = context.backend

    @classmethod
    def unavailable(cls, backend: str, devices: int) -> str | None:
        """Why this runtime cannot run here (None when it can); checked before anything starts.

        ``devices`` is how many CUDA devices the scenario needs (0 for gloo).
        """
        if devices:
            found = cuda_devices()
            if found < devices:
                return f"backend {backend} needs {devices} CUDA device(s), this machine has {found}"
        return None

    @abc.abstractmethod
    async def start(self) -> None:
        """Set up the runtime in this process (inside the running event loop)."""

    @abc.abstractmethod
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
        """Form ``world`` with its other members (``members`` in rank order); rank 0 hosts
        the world's store at addr:port."""

    @abc.abstractmethod
    def remove_world(self, world: str) -> None:
        """Leave ``world`` gracefully (no error if it is already gone)."""

    @abc.abstractmethod
    async def send(self, world: str, tensor: Any, dst: int) -> None: ...

    @abc.abstractmethod
    async def recv(self, world: str, tensor: Any, src: int) -> None: ...

    @abc.abstractmethod
    async def all_reduce(self, world: str, tensor: Any) -> None: ...

    @abc.abstractmethod
    def is_broken(self, world: str) -> bool:
        """The runtime's own broken-world query."""

    def is_failure(self, exc: BaseException) -> bool:
        """True when ``exc`` is the runtime reporting a failed world (not a harness bug)."""
        return isinstance(exc, RuntimeError)


def cuda_devices() -> int:
    """CUDA devices visible here, asked in a fresh process so the caller never imports torch."""
    probe = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    try:
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
        )
        return int(out.stdout.strip() or 0)
    except (subprocess.TimeoutExpired, ValueError):
        return 0


def names() -> list[str]:
    """Installed runtime names."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load(name: str) -> type[Runtime]:
    """The adapter class registered under ``name``; ``RuntimeNotFound`` if none is."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Runtime)):
                raise RuntimeNotFound(f"runtime {name!r} ({ep.value}) is not a mwsim Runtime")
            return cls
    installed = ", ".join(names()) or "none"
    raise RuntimeNotFound(f"no runtime named {name!r} (installed: {installed})")
