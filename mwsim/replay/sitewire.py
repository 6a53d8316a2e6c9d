"""Messages between the controller and a site (a fork server, or a cluster node's host
actor), as small typed records, like the agents' (:mod:`mwsim.replay.protocol`).

A fork server speaks JSON lines on a pipe pair; a host actor speaks JSON objects on its
authenticated channel. Both encode a message as a JSON object with its ``type`` and
decode only known messages with exactly their fields (``ValueError`` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mwsim.replay.protocol import Message, decode_as, encode

# -- controller -> site -------------------------------------------------------------------


@dataclass(frozen=True)
class Fork(Message):
    """Fork an agent that serves ``boot`` (a ``Boot`` as a dict), its output to ``log``."""

    TYPE = "fork"
    ident: int
    boot: dict[str, Any]
    log: str


@dataclass(frozen=True)
class Signal(Message):
    """Send ``signum`` to the agent's process group (a host actor; locally the kernel)."""

    TYPE = "signal"
    pgid: int
    signum: int


@dataclass(frozen=True)
class WantPort(Message):
    """Pick a free port on the node (answered by ``FreePort`` with the same ``ident``)."""

    TYPE = "want_port"
    ident: int


@dataclass(frozen=True)
class Close(Message):
    """Stop the fork server and check that these groups and ports are gone."""

    TYPE = "close"
    groups: list[int]
    ports: list[int]


# -- site -> controller -------------------------------------------------------------------


@dataclass(frozen=True)
class SiteReady(Message):
    """The fork server is warm; ``loaded``: where the runtime's modules came from."""

    TYPE = "site_ready"
    pid: int
    loaded: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SiteFailed(Message):
    """The site could not start (why, with the end of its log)."""

    TYPE = "site_failed"
    why: str


@dataclass(frozen=True)
class Forked(Message):
    """The agent of request ``ident`` runs as ``pid`` (or could not start: ``error``)."""

    TYPE = "forked"
    ident: int
    pid: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Reaped(Message):
    """An agent ended with exit status ``code``; a node adds the end of its ``log``."""

    TYPE = "reaped"
    pid: int
    code: int
    log: str | None = None


@dataclass(frozen=True)
class State(Message):
    """Whether a signalled process group is now stopped (a host actor watched it)."""

    TYPE = "state"
    pgid: int
    stopped: bool


@dataclass(frozen=True)
class FreePort(Message):
    """The free port asked for by ``WantPort`` ``ident``."""

    TYPE = "free_port"
    ident: int
    port: int


@dataclass(frozen=True)
class Closed(Message):
    """What ``Close`` checked, what was left, and the node's logs (by file name)."""

    TYPE = "closed"
    checked: dict[str, Any]
    groups: list[int]
    ports: list[int]
    logs: dict[str, str] = field(default_factory=dict)


TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        *(Fork, Signal, WantPort, Close),  # controller -> site
        *(SiteReady, SiteFailed, Forked, Reaped, State, FreePort, Closed),  # site -> controller
    )
}


def decode(data: Any) -> Message:
    """A site message from its JSON object; ``ValueError`` for anything else."""
    return decode_as(data, TYPES)


__all__ = ["TYPES", "decode", "encode"]
