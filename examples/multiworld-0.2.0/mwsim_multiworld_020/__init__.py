"""mwsim's runtime adapter for MultiWorld 0.2.0, a build other than the installed one.

``source`` is where that build's ``multiworld`` package lies (``MWSIM_MULTIWORLD_020``, or
``build/`` beside this package): mwsim's fork server imports it from there and never the
installed release. The adapter is upstream's with the one call whose API differs: 0.2.0's
``initialize_world`` takes no ``device`` (and has no NCCL warm-up).

On import it prints which build it uses, as some runtimes do: that goes to the fork
server's log, never into mwsim's protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mwsim.runtimes import INTERFACE
from mwsim.runtimes.multiworld import MultiWorldRuntime

SOURCE = os.environ.get("MWSIM_MULTIWORLD_020", str(Path(__file__).resolve().parents[1] / "build"))

print(f"mwsim-multiworld-020: MultiWorld 0.2.0 from {SOURCE}")


class MultiWorld020(MultiWorldRuntime):
    """MultiWorld 0.2.0 as the system under test."""

    name = "multiworld-0.2.0"
    interface = INTERFACE
    source = SOURCE

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
        await self._manager.initialize_world(
            world, rank, size, backend=self.backend, addr=addr, port=port
        )
