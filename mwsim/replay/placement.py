"""Where a run's agents live, as the controller sees it: a ``Placement``.

This machine (loopback, or emulated hosts in network namespaces) with one fork server for
every host, or a Ray cluster with a host actor per node (:mod:`mwsim.replay.raynodes`).
The controller asks only what the protocol says, never which one it has.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from mwsim import hosts
from mwsim.errors import Inconclusive
from mwsim.events import AnyEvent
from mwsim.hosts.netfaults import NetFaults
from mwsim.membership import Plan
from mwsim.replay.processes import Leftovers
from mwsim.replay.raynodes import RayNodes
from mwsim.replay.sites import LocalSite, Site
from mwsim.replay.zygote import Zygote, agent_env

#: When set, where every replay places its agents (as ``cluster``): ``fuzz --cluster``.
CLUSTER_ENV = "MWSIM_CLUSTER"


class Placement(hosts.Network, Protocol):
    """A run's hosts (a ``Network``), and how the controller reaches their agents."""

    @property
    def key(self) -> bytes | None: ...  # the agents' channel key (None: the pool's own)
    @property
    def listen_on(self) -> str | None: ...  # the TCP address agents reach (None: a socket)
    @property
    def faults(self) -> NetFaults | None: ...  # network faults here (None: none can be made)

    def unavailable_for(self, event: AnyEvent) -> str | None: ...

    def open_sites(self, runtime: str, logs: Path, timeout_s: float) -> Mapping[str, Site]:
        """Start each host's site (``BringUpFailed``, ``ZygoteError`` or ``OSError`` if one
        cannot start: ``started`` then says which did, for the teardown)."""
        ...

    def started(self) -> Mapping[str, Site]: ...

    def with_down(self, found: Leftovers, down: tuple[str, ...]) -> Leftovers:
        """What ``down`` left, added to what the sites left."""
        ...


class LocalPlacement:
    """This machine's hosts (loopback or emulated) and one fork server for all of them:
    a caller's warm one (kept running) if it has the runtime's image, else the run's own."""

    key: bytes | None = None
    listen_on: str | None = None

    def __init__(
        self,
        network: hosts.Network,
        names: Sequence[str],
        zygote: Zygote | None,
        image: tuple[str, ...],
    ) -> None:
        self.network = network
        self.names = list(names)  # the topology's hosts
        self.kind = network.kind
        self.shared = zygote if zygote is not None and zygote.image == image else None
        self.faults = NetFaults(network) if isinstance(network, hosts.Emulated) else None
        self.sites: dict[str, Site] = {}

    def unavailable_for(self, event: AnyEvent) -> str | None:
        return None  # what this machine lacks, the controller checks for every run

    def open_sites(self, runtime: str, logs: Path, timeout_s: float) -> dict[str, Site]:
        zygote = self.shared or Zygote(runtime, logs / "zygote.log", agent_env())
        self.sites = dict.fromkeys(self.names, LocalSite(zygote, owned=self.shared is None))
        return self.sites

    def started(self) -> Mapping[str, Site]:
        return self.sites

    def with_down(self, found: Leftovers, down: tuple[str, ...]) -> Leftovers:
        return replace(found, namespaces=down)

    # -- the Network protocol, the network's -------------------------------------------------

    def up(self) -> None:
        self.network.up()

    def address(self, host: str) -> str:
        return self.network.address(host)

    def netns(self, host: str) -> str | None:
        return self.network.netns(host)

    def ifname(self, host: str) -> str | None:
        return self.network.ifname(host)

    def free_port(self, host: str) -> int:
        return self.network.free_port(host)

    def describe(self) -> dict[str, Any]:
        return self.network.describe()

    def down(self) -> list[str]:
        return self.network.down()


def placement_for(
    plan: Plan,
    backend: str,
    *,
    network: str,
    cluster: str | None,
    zygote: Zygote | None,
    image: tuple[str, ...],
) -> Placement:
    """Where a run of ``plan`` goes: the cluster asked for (or ``MWSIM_CLUSTER``), else
    this machine's hosts (emulated where possible, or as ``network`` says).
    ``Inconclusive`` if an event cannot be made there."""
    cluster = cluster if cluster is not None else os.environ.get(CLUSTER_ENV) or None
    topology_hosts = plan.initial.hosts()
    place: Placement
    if cluster is not None:
        gpus = {h: plan.initial.gpus_of(h) for h in topology_hosts}
        place = RayNodes(cluster, topology_hosts, gpus if backend == "nccl" else {})
    else:
        faults = any(step.event.info.network for step in plan.steps)
        chosen = hosts.choose(topology_hosts, needed=faults, prefer=network)
        place = LocalPlacement(chosen, topology_hosts, zygote, image)
    for step in plan.steps:
        reason = place.unavailable_for(step.event)
        if reason is not None:
            raise Inconclusive(f"events[{step.index}]: {reason}")
    return place
