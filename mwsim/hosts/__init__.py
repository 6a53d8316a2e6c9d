"""Where a run's agents live: shared loopback, or emulated network hosts.

A ``Network`` gives each topology host an address (where its world stores listen), the
namespace its agents join and the interface their collectives use. ``choose`` picks
emulated hosts (:mod:`mwsim.hosts.emulated`) wherever this machine allows them, and
loopback elsewhere; a scenario with network faults cannot run on loopback, which is
``Inconclusive`` before anything starts.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any, Protocol

from mwsim.errors import Inconclusive
from mwsim.hosts import emulated

LOOPBACK = "127.0.0.1"
#: The values of ``--network`` (and ``MWSIM_NETWORK``).
CHOICES = ("auto", "emulated", "loopback")


class Network(Protocol):
    """What the replay needs to know about the hosts of a run."""

    kind: str

    def up(self) -> None: ...
    def address(self, host: str) -> str: ...
    def netns(self, host: str) -> str | None: ...
    def ifname(self, host: str) -> str | None: ...
    def free_port(self, host: str) -> int: ...
    def describe(self) -> dict[str, Any]: ...
    def down(self) -> list[str]: ...


class Loopback:
    """Every host is this machine's loopback: hosts are only labels."""

    kind = "loopback"

    def up(self) -> None:
        pass

    def address(self, host: str) -> str:
        return LOOPBACK

    def netns(self, host: str) -> str | None:
        return None

    def ifname(self, host: str) -> str | None:
        return None

    def free_port(self, host: str) -> int:
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            return int(sock.getsockname()[1])

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": LOOPBACK}

    def down(self) -> list[str]:
        return []


class Emulated(emulated.Fabric):
    """Each host its own network namespace on a per-run switch."""

    kind = "emulated"

    def ifname(self, host: str) -> str | None:
        return emulated.IFNAME


def choose(hosts: Sequence[str], *, needed: bool, prefer: str = "auto") -> Network:
    """The network a run gets: emulated where possible (or ``prefer``), loopback else.

    ``needed``: the scenario has network faults, so loopback will not do
    (``Inconclusive`` with the reason).
    """
    if prefer not in CHOICES:
        raise ValueError(f"network must be one of {', '.join(CHOICES)}, not {prefer!r}")
    reason = emulated.unavailable() if prefer != "loopback" else "--network loopback was asked"
    if reason is None:
        return Emulated(hosts)
    if needed:
        raise Inconclusive(f"the scenario has network faults, but {reason}")
    if prefer == "emulated":
        raise Inconclusive(f"emulated hosts were asked for, but {reason}")
    return Loopback()
