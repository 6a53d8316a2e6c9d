"""Upstream MultiWorld (PyPI ``multiworld``) as the system under test, and the base of an
adapter for any other build of it (a checkout, a fork, an older release: ``source``)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import sys
from collections.abc import Sequence
from importlib.machinery import PathFinder
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mwsim import findings
from mwsim.runtimes import INTERFACE, Runtime, package_info

if TYPE_CHECKING:
    from mwsim.membership import Membership


def torch_fits(multiworld: Path) -> str | None:
    """Why the installed torch is not a release this MultiWorld build patches (None: it
    is one), from the patches it ships."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "torch is not installed"
    release = version.split("+")[0]
    patches = sorted(p.name for p in (multiworld / "patch").glob("pytorch-v*.patch"))
    if not patches or f"pytorch-v{release}.patch" in patches:
        return None
    known = ", ".join(
        sorted({p.removeprefix("pytorch-v").split("-")[0].removesuffix(".patch") for p in patches})
    )
    return (
        f"this MultiWorld build patches torch {known} only, and this environment has torch "
        f"{version}: install 'mwsim[multiworld]' (torch 2.4.0) in an environment of its own"
    )


def layer_unavailable() -> str | None:
    """Why mwsim's worlds layer cannot carry MultiWorld on the installed torch (None: it
    can), read without importing torch."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "torch is not installed"
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    if (major, minor) < LAYER_FROM:
        wanted = ".".join(map(str, LAYER_FROM))
        return f"torch {version} is older than the {wanted} the worlds layer needs"
    return None


def torch_patched() -> str | None:
    """Why the installed torch lacks MultiWorld's patch (None: it has it); read from its
    source, so nothing is imported."""
    spec = PathFinder.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return "torch is not installed"
    init = Path(next(iter(spec.submodule_search_locations))) / "distributed" / "__init__.py"
    try:
        patched = "_worlds," in init.read_text()
    except OSError as exc:
        return f"cannot read {init}: {exc}"
    return None if patched else "torch is not patched for MultiWorld (run: make install)"


#: How MultiWorld runs on this machine's torch (the history's ``runtime_package.path``):
#: on the torch release it patched itself, or on mwsim's worlds layer.
PATCH, LAYER = "torch patch", "mwsim worlds layer"
#: The oldest torch the worlds layer carries MultiWorld on (older ones have its patch).
LAYER_FROM = (2, 4)


class MultiWorldRuntime(Runtime):
    """Each world is a MultiWorld world; its watchdog and exceptions report failures.

    ``source``: a directory holding another build's ``multiworld`` package, imported
    instead of the installed one (the fork server then never sees the installed one).
    On a torch the build has no patch for, MultiWorld runs on mwsim's worlds layer
    (``mwsim.runtimes.worlds_layer``), installed before it is imported (``path``).
    """

    name = "multiworld"
    interface = INTERFACE
    preload = ("multiworld.manager", "multiworld.communicator")
    known_findings = findings.FINDINGS
    source: ClassVar[str | None] = None
    #: Whether MultiWorld's watchdog runs (a mutant turns it off).
    watchdog = True

    @classmethod
    def _search(cls) -> list[str] | None:
        return [str(Path(cls.source).resolve())] if cls.source else None

    @classmethod
    def _package(cls) -> Path | None:
        """Where the ``multiworld`` package this adapter imports lies (None: nowhere)."""
        spec = PathFinder.find_spec("multiworld", cls._search())
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))

    @classmethod
    def path(cls) -> str:
        """``PATCH`` where MultiWorld has a patch for the installed torch, else ``LAYER``."""
        where = cls._package()
        return PATCH if where is None or torch_fits(where) is None else LAYER

    @classmethod
    def unavailable(cls, backend: str, devices: int) -> str | None:
        where = cls._package()
        if where is None:
            if cls.source:
                return f"no multiworld package in {cls.source}"
            return (
                "the multiworld package is not installed (make install; or, beside the torch "
                "a machine has: pip install --no-deps multiworld==0.2.3)"
            )
        if cls.path() == LAYER:
            return layer_unavailable() or super().unavailable(backend, devices)
        marker = where / "init.txt"  # an installed release patches torch at first import
        if not cls.source and marker.exists() and marker.read_text().strip() != "true":
            return "multiworld's one-time torch patch has not run (run: make install)"
        return torch_patched() or super().unavailable(backend, devices)

    @classmethod
    def image(cls) -> tuple[str, ...]:
        return (*cls.preload, f"source={cls._search()}", f"path={cls.path()}")

    @classmethod
    def prepare(cls) -> None:
        """On a torch MultiWorld has no patch for, mwsim's worlds layer first; with
        ``source``: that build first on the path, and no other build imported."""
        if cls.path() == LAYER:
            from mwsim.runtimes import worlds_layer

            worlds_layer.install()
        if not cls.source:
            return
        where = str(Path(cls.source).resolve())
        if where not in sys.path:
            sys.path.insert(0, where)
        for name in [m for m in sys.modules if m == "multiworld" or m.startswith("multiworld.")]:
            module = sys.modules[name]
            if not str(getattr(module, "__file__", "") or "").startswith(where):
                del sys.modules[name]

    @classmethod
    def describe(cls) -> dict[str, Any]:
        info = package_info("multiworld", cls._search())
        info["path"] = cls.path()
        if "version" not in info and "location" in info:  # a checkout: read version.py
            version = Path(info["location"]) / "version.py"
            with contextlib.suppress(OSError):
                found = re.search(r"VERSION\s*=\s*[\"']([^\"']+)", version.read_text())
                if found:
                    info["version"] = found.group(1)
        return info

    @classmethod
    def known_finding(
        cls, timeline: Membership, fields: dict[str, Any], at: float, workload: str
    ) -> int | str | None:
        return findings.known_finding(timeline, fields, at, workload)

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
