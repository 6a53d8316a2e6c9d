"""Where agents are forked, signalled and reaped: this machine, or one Ray node.

The agent pool talks to a ``Site`` only: ``LocalSite`` is the warm fork server on this
machine with the kernel's signals and ``/proc``; a Ray node's site
(:mod:`mwsim.replay.raynodes`) relays the same verbs to the host actor on that node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from mwsim.errors import ZygoteError
from mwsim.replay import processes
from mwsim.replay.processes import Leftovers
from mwsim.replay.sitewire import Reaped
from mwsim.replay.zygote import Zygote

#: How long agents orphaned by a lost fork server may take to be gone.
ORPHANS_GONE_S = 5.0


class Site(Protocol):
    """One place agents run; ``close`` ends it and says what it left behind."""

    name: str
    log: Path  # the fork server's log (here)

    @property
    def pid(self) -> int: ...  # the fork server's pid on its machine: agents die with it
    @property
    def loaded(self) -> dict[str, str | None]: ...  # the runtime's modules agents inherit
    def fileno(self) -> int: ...  # readable when reports arrive
    def wait_ready(self, timeout_s: float, check: Callable[[], None] | None = None) -> None: ...
    def lost(self) -> str | None: ...  # why it can no longer fork or report (None: it can)
    def fork(self, boot: dict[str, Any], log: Path) -> int: ...
    def read(self) -> list[Reaped]: ...  # agents that ended since the last read
    def signal(self, pgid: int, signum: int) -> None: ...
    def is_stopped(self, pid: int) -> bool: ...
    def close(self, groups: Iterable[int], ports: Iterable[int]) -> Leftovers: ...
    def checked(self) -> dict[str, Any]: ...  # what ``close`` checked, for the history


class LocalSite:
    """This machine: a fork server (ours, or a caller's warm one that we leave running)."""

    def __init__(self, zygote: Zygote, owned: bool) -> None:
        self.name = "local"
        self.zygote = zygote
        self.owned = owned
        self.log = zygote.log
        self._checked: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.zygote.pid

    @property
    def loaded(self) -> dict[str, str | None]:
        return self.zygote.loaded

    def fileno(self) -> int:
        return self.zygote.fileno()

    def wait_ready(self, timeout_s: float, check: Callable[[], None] | None = None) -> None:
        self.zygote.wait_ready(timeout_s, check)

    def lost(self) -> str | None:
        if self.zygote.alive:
            return None
        code = self.zygote.proc.returncode
        return f"the fork server (pid {self.zygote.pid}) exited (code {code})"

    def fork(self, boot: dict[str, Any], log: Path) -> int:
        return self.zygote.fork(boot, log)

    def read(self) -> list[Reaped]:
        return self.zygote.read()

    def signal(self, pgid: int, signum: int) -> None:
        processes.signal_group(pgid, signum)

    def is_stopped(self, pid: int) -> bool:
        return processes.is_stopped(pid)

    def close(self, groups: Iterable[int], ports: Iterable[int]) -> Leftovers:
        groups = list(groups)
        orphans = not self.zygote.alive  # its agents died with it: init reaps them
        if self.owned:
            with contextlib.suppress(ZygoteError):
                orphans = self.zygote.stop() or orphans  # killed: so were its children
            groups.append(self.zygote.pid)
        ports = list(ports)
        self._checked = {"process_groups": len(groups), "ports": len(ports)}
        return processes.leftovers(groups, ports, ORPHANS_GONE_S if orphans else 0.0)

    def checked(self) -> dict[str, Any]:
        return self._checked
