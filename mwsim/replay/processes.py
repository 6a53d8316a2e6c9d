"""Real processes of a replay: signal whole groups, observe their state, find leftovers.

Every agent leads its own process group, so a fault or the teardown acts on everything
it started. Facts about a process are read from ``/proc`` (is it stopped?) and from
``waitpid`` (did it die, how? the zygote reports it), never assumed from a signal sent.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

#: How often to look whether orphaned agents are gone (nobody reports their end).
ORPHAN_POLL_S = 0.01


def free_port(addr: str) -> int:
    """A port free right now on ``addr`` (the caller's process binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((addr, 0))
        return int(sock.getsockname()[1])


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to an agent's process group; False when neither it nor its leader
    exists. An agent leads its own group, but only once its first instruction after the
    fork (``setsid``) has run: a signal just before that goes to the process itself."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        pass
    try:
        os.kill(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def proc_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``T`` = stopped), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def is_stopped(pid: int) -> bool:
    return proc_state(pid) in ("T", "t")


def group_alive(pgid: int) -> bool:
    """Does any process (zombies included) remain in the group?"""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@dataclass(frozen=True)
class Leftovers:
    """What a run left behind: process groups with members, ports still listening,
    network namespaces (with their links, rules and helpers) still there, and on a
    cluster, host actors or fault rules still there and nodes that could not be checked."""

    groups: tuple[int, ...]
    ports: tuple[int, ...]
    namespaces: tuple[str, ...] = ()
    cluster: tuple[str, ...] = ()  # still on a cluster: host actors, network fault rules
    unchecked: tuple[str, ...] = ()  # places (cluster nodes) that could not be checked

    @property
    def clean(self) -> bool:
        return not (self.groups or self.ports or self.namespaces or self.cluster or self.unchecked)

    def describe(self) -> str:
        if self.clean:
            return "no process, port or namespace left behind"
        parts = []
        if self.groups:
            parts.append(f"process groups still alive: {', '.join(map(str, self.groups))}")
        if self.ports:
            parts.append(f"ports still listening: {', '.join(map(str, self.ports))}")
        if self.namespaces:
            parts.append(f"network namespaces still there: {', '.join(self.namespaces)}")
        if self.cluster:
            parts.append(f"still on the cluster: {', '.join(self.cluster)}")
        if self.unchecked:
            parts.append(f"could not be checked: {', '.join(self.unchecked)}")
        return "; ".join(parts)


def listening(ports: Iterable[int]) -> list[int]:
    """Which of ``ports`` some socket on this machine still listens on."""
    wanted = set(ports)
    if not wanted:
        return []
    found = {
        c.laddr.port
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in wanted
    }
    return sorted(found)


def leftovers(pgids: Iterable[int], ports: Iterable[int], wait_s: float = 0.0) -> Leftovers:
    """The groups and ports still there, after waiting up to ``wait_s`` for the groups to
    go (orphans of a lost fork server are reaped by init, which tells nobody)."""
    pgids = list(pgids)
    deadline = time.monotonic() + wait_s
    while any(map(group_alive, pgids)) and time.monotonic() < deadline:
        time.sleep(ORPHAN_POLL_S)
    return Leftovers(tuple(g for g in pgids if group_alive(g)), tuple(listening(ports)))
