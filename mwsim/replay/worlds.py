"""Forming worlds on live agents: rank 0 first (it picks the store's port), then the rest.

A world incarnation is formed by telling its rank 0 to ``init_world`` with no port; when
rank 0 reports the port it bound, every other member is told to join at that port. A
world is formed once every member has reported ``joined`` for it.
"""

from __future__ import annotations

from mwsim.history import Joined, Record
from mwsim.membership import WorldId, WorldLife
from mwsim.replay.pool import AgentPool, AgentProc
from mwsim.replay.protocol import InitWorld, Port


class Formation:
    """The worlds being formed and formed, and the store ports they use."""

    def __init__(self, pool: AgentPool) -> None:
        self.pool = pool
        self.forming: dict[WorldId, tuple[str, ...]] = {}
        self.joined: set[tuple[WorldId, str]] = set()
        self.ports: set[int] = set()

    def form(self, life: WorldLife) -> None:
        """Start forming ``life`` (commands wait for agents that are not up yet)."""
        self.forming[life.id] = life.members
        self.pool.command(
            life.members[0], InitWorld(life.name, life.id.life, 0, list(life.members))
        )

    def formed(self, life: WorldLife) -> bool:
        return all((life.id, m) in self.joined for m in life.members)

    def on_port(self, agent: AgentProc, message: Port) -> None:
        """Rank 0 bound its store: the other members join at that port."""
        self.ports.add(message.port)
        members = self.forming.get(WorldId(message.world, message.life), ())
        for rank, member in enumerate(members[1:], start=1):
            init = InitWorld(
                message.world, message.life, rank, list(members), message.port, message.addr
            )
            self.pool.command(member, init)

    def saw(self, agent: AgentProc, record: Record) -> None:
        """Take note of a history record (a ``Joined`` one advances formation)."""
        if isinstance(record, Joined):
            self.joined.add((WorldId(record.world, record.life or 0), agent.worker))
