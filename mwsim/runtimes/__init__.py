"""Adapters for the system under test, found through the ``mwsim.runtimes`` entry-point group.

An adapter is what one worker process sees of the runtime: join a world, leave it, move
tensors, and say which worlds are broken. Upstream ``multiworld`` is the first and the
default; other implementations (another build of MultiWorld, a fork) plug in by declaring
an entry point::

    [project.entry-points."mwsim.runtimes"]
    myruntime = "mypackage.adapter:MyRuntime"

The ``Runtime`` class is a public contract, versioned by ``INTERFACE``: an adapter states
the version it was written for (``interface``); additions keep older adapters working, and
an adapter written for a version this mwsim does not know is refused with the reason.
"""

from __future__ import annotations

import abc
import importlib
import importlib.metadata
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mwsim.errors import RuntimeNotFound
from mwsim.events import Kind

if TYPE_CHECKING:
    from mwsim.membership import Membership

GROUP = "mwsim.runtimes"

#: The interface version of ``Runtime`` this mwsim implements, and the ones it still runs.
#: 1: the original methods. 2 adds ``supports``, ``preload``, ``prepare``,
#: ``known_finding``, ``known_findings`` and ``describe`` (all with defaults).
INTERFACE = 2
SUPPORTED_INTERFACES = (1, 2)

#: Operations a runtime may lack (it declares what it has in ``supports``).
OPERATIONS = ("send", "recv", "all_reduce", "remove_world")


class Unsupported(NotImplementedError):
    """The runtime does not have this operation (it should not be asked: see ``supports``)."""


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
    """The system under test in one worker process; created inside the agent's event loop.

    Failure signal: an exception for which ``is_failure`` is true is the runtime reporting
    a broken world; any other exception it raises is judged an error (property ``errors``).
    """

    name: ClassVar[str]
    #: The version of this interface the adapter was written for (see ``INTERFACE``).
    interface: ClassVar[int] = 1
    #: Ask the controller for a deployment-wide port (``Context.rendezvous``).
    needs_rendezvous: ClassVar[bool] = False
    #: The operations it has (of ``OPERATIONS``); a scenario needing another is inconclusive.
    supports: ClassVar[frozenset[str]] = frozenset(OPERATIONS)
    #: Modules the fork server imports (after ``prepare``) so that every agent starts warm.
    preload: ClassVar[tuple[str, ...]] = ()
    #: Its known bugs, by number or name, with a line each (for reports and the fuzzers).
    known_findings: ClassVar[Mapping[int | str, str]] = {}

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

    @classmethod
    def prepare(cls) -> None:
        """Set up the process to import this runtime (say, put another build first on
        ``sys.path``); called in the fork server before ``preload`` and in every agent."""
        return None

    @classmethod
    def image(cls) -> tuple[str, ...]:
        """What a fork server must have prepared and imported to fork this runtime's
        agents; runtimes with equal images may share one."""
        return cls.preload

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """What is under test, for the history's ``run`` line: the package, its version,
        where it is loaded from (without importing it in the controller)."""
        return package_info(cls.__module__.split(".")[0])

    @classmethod
    def known_finding(
        cls, timeline: Membership, fields: dict[str, Any], at: float, workload: str
    ) -> int | str | None:
        """The known finding (a key of ``known_findings``) that the event ``fields`` at
        ``at`` would run into, given the membership state ``timeline`` just before it and
        the workload's kind; None: none. The fuzzers steer around them."""
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

    def remove_world(self, world: str) -> None:
        """Leave ``world`` gracefully (no error if it is already gone)."""
        raise Unsupported(f"runtime {self.name} has no remove_world")

    async def send(self, world: str, tensor: Any, dst: int) -> None:
        raise Unsupported(f"runtime {self.name} has no send")

    async def recv(self, world: str, tensor: Any, src: int) -> None:
        raise Unsupported(f"runtime {self.name} has no recv")

    async def all_reduce(self, world: str, tensor: Any) -> None:
        raise Unsupported(f"runtime {self.name} has no all_reduce")

    @abc.abstractmethod
    def is_broken(self, world: str) -> bool:
        """The runtime's own broken-world query."""

    def is_failure(self, exc: BaseException) -> bool:
        """True when ``exc`` is the runtime reporting a failed world (its failure signal)."""
        return isinstance(exc, RuntimeError)


def needed_operations(workload: str, event_kinds: Iterable[Kind]) -> set[str]:
    """The operations a scenario asks of a runtime: its workload's and its events'."""
    needed = {"all_reduce"} if workload == "allreduce" else {"send", "recv"}
    if {Kind.LEAVE, Kind.REMOVE_WORLD} & set(event_kinds):  # graceful ends remove worlds
        needed.add("remove_world")
    return needed


def missing_operations(
    cls: type[Runtime], workload: str, event_kinds: Iterable[Kind]
) -> str | None:
    """Why ``cls`` cannot run a scenario of this workload and events (None: it can)."""
    missing = sorted(needed_operations(workload, event_kinds) - set(cls.supports))
    if not missing:
        return None
    return f"it does not support {', '.join(missing)}, which this scenario needs"


def package_info(package: str, path: Sequence[str] | None = None) -> dict[str, Any]:
    """A package's distribution version and location (found, not imported); ``path``:
    where to look instead of ``sys.path``."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec(package, list(path) if path is not None else None)
    info: dict[str, Any] = {"package": package}
    if spec is None:
        return info
    places = list(spec.submodule_search_locations or [])
    where = Path(places[0]) if places else Path(str(spec.origin))
    info["location"] = str(where)
    version = _version_near(package, where.parent)
    if version is not None:
        info["version"] = version
    return info


def _version_near(package: str, site: Path) -> str | None:
    """The version of the distribution that installed ``package`` into ``site``."""
    for dist in importlib.metadata.distributions(path=[str(site)]):
        top = dist.read_text("top_level.txt") or ""
        if package in top.split() or dist.metadata["Name"].replace("-", "_") == package:
            return str(dist.version)
    return None


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
    """The adapter class registered under ``name``; ``RuntimeNotFound`` if none is (or it
    is not a ``Runtime``, or it was written for an interface this mwsim does not run)."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            try:
                cls = ep.load()
            except Exception as exc:  # a broken adapter package: say which and why
                raise RuntimeNotFound(
                    f"runtime {name!r} ({ep.value}) cannot be imported: {exc!r}"
                ) from exc
            if not (isinstance(cls, type) and issubclass(cls, Runtime)):
                raise RuntimeNotFound(f"runtime {name!r} ({ep.value}) is not a mwsim Runtime")
            if cls.interface not in SUPPORTED_INTERFACES:
                raise RuntimeNotFound(
                    f"runtime {name!r} ({ep.value}) is written for mwsim runtime interface "
                    f"{cls.interface}; this mwsim runs interfaces "
                    f"{', '.join(map(str, SUPPORTED_INTERFACES))} (upgrade mwsim or the adapter)"
                )
            return cls
    installed = ", ".join(names()) or "none"
    raise RuntimeNotFound(f"no runtime named {name!r} (installed: {installed})")


def import_all(modules: Iterable[str]) -> None:
    """Import each module (the fork server's preload)."""
    for module in modules:
        importlib.import_module(module)
