"""Ray nodes as hosts: each topology host on one node of a Ray cluster, a host actor on each.

With ``--cluster``, a run's network is ``RayNodes``: it connects to the cluster, places
each topology host on one alive node (a node that claims it with the custom resource
``mwsim-host-<name>`` first, the others on the remaining nodes with a CPU, respecting
``gpus:`` on NCCL runs), and starts one ``HostActor`` (:mod:`mwsim.replay.hostactor`, the
side that runs on the node) pinned to each placed node. The
actor runs that node's warm fork server, forks the node's agents, signals them, reaps them
and checks what they left on the node; the controller drives it as a ``RaySite`` over the
authenticated JSON channel (:mod:`mwsim.replay.channel`), keyed by a run key both ends
derive from the cluster's secret and a per-run nonce, so no secret crosses the wire. Ray
places and ends the actors; everything else is the replay's own machinery. Ray is imported
only here, and only when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mwsim.errors import BringUpFailed, Inconclusive, ZygoteError
from mwsim.events import AnyEvent, PowerOff
from mwsim.hosts import cluster
from mwsim.hosts.cluster import RESOURCE_PREFIX, SECRET_ENV, read_state
from mwsim.hosts.netfaults import NetFaults
from mwsim.replay import channel
from mwsim.replay import sitewire as wire
from mwsim.replay.hostactor import REPLY_S, HostActor, run_key
from mwsim.replay.processes import Leftovers
from mwsim.replay.protocol import Message

_connected: list[str] = []  # the cluster this process's Ray client is connected to


@dataclass(frozen=True)
class Node:
    """One Ray node as placement sees it."""

    id: str
    address: str
    cpus: float
    gpus: float
    claims: frozenset[str]  # topology hosts it claims (``mwsim-host-<name>`` resources)
    alive: bool = True


def nodes_of(raw: Iterable[Mapping[str, Any]]) -> list[Node]:
    """Nodes from ``ray.nodes()`` records."""
    out = []
    for record in raw:
        resources = record.get("Resources") or {}
        claims = frozenset(
            name[len(RESOURCE_PREFIX) :] for name in resources if name.startswith(RESOURCE_PREFIX)
        )
        out.append(
            Node(
                id=str(record["NodeID"]),
                address=str(record.get("NodeManagerAddress", "")),
                cpus=float(resources.get("CPU", 0)),
                gpus=float(resources.get("GPU", 0)),
                claims=claims,
                alive=bool(record.get("Alive", False)),
            )
        )
    return out


def place(hosts: Sequence[str], gpus: Mapping[str, int], nodes: Sequence[Node]) -> dict[str, Node]:
    """One node per host: a node claiming it, else a remaining alive node with a CPU (and
    ``gpus[host]`` GPUs). ``Inconclusive`` naming what is missing when it cannot be done."""
    alive = sorted((n for n in nodes if n.alive), key=lambda n: (bool(n.claims), n.address, n.id))
    placed: dict[str, Node] = {}
    missing: list[str] = []
    for host in hosts:
        claiming = [n for n in alive if host in n.claims]
        if len(claiming) > 1:
            missing.append(f"{host} is claimed by {len(claiming)} nodes")
        elif claiming:
            placed[host] = claiming[0]
    used = {n.id for n in placed.values()}
    rest = [n for n in alive if n.id not in used and n.cpus >= 1 and not n.claims & set(hosts)]
    for host in sorted((h for h in hosts if h not in placed), key=lambda h: -gpus.get(h, 0)):
        fit = [n for n in rest if n.gpus >= gpus.get(host, 0)]
        if not fit:
            need = f" with {gpus[host]} GPU(s)" if gpus.get(host) else " with a CPU"
            missing.append(f"{host}: no node left{need}")
            continue
        node = min(fit, key=lambda n: n.gpus)
        rest.remove(node)
        placed[host] = node
    for host, node in placed.items():
        if node.gpus < gpus.get(host, 0):
            have = f"its node {node.address} has {node.gpus:g}"
            missing.append(f"{host} needs {gpus[host]} GPU(s), {have}")
    if missing:
        usable = sum(1 for n in alive if n.cpus >= 1 or n.claims)
        raise Inconclusive(
            f"the cluster cannot hold the topology ({len(hosts)} host(s), {usable} usable "
            f"node(s) alive): " + "; ".join(missing)
        )
    return placed


# -- the cluster's address and secret --------------------------------------------------------


def resolve(spec: str) -> tuple[str, bytes]:
    """``--cluster`` -> (Ray address, cluster secret); ``Inconclusive`` why not."""
    local = read_state()
    if spec == "auto":
        if local is None:
            raise Inconclusive("--cluster auto: no local cluster runs (mwsim cluster start)")
        address = str(local["address"])
    elif spec == "ray":
        address = os.environ.get("RAY_ADDRESS", "")
        if not address:
            raise Inconclusive("--cluster ray needs RAY_ADDRESS (or --cluster ray://HOST:PORT)")
    elif spec.startswith("ray://"):
        address = spec
    else:
        raise ValueError(f"--cluster must be ray, ray://HOST:PORT or auto, not {spec!r}")
    secret = os.environ.get(SECRET_ENV, "")
    if not secret and local is not None and local.get("address") == address:
        secret = Path(local["secret_file"]).read_text().strip()
    if not secret:
        raise Inconclusive(f"set {SECRET_ENV} to the secret the cluster's nodes were started with")
    return address, secret.encode()


def _head_host(address: str) -> str | None:
    rest = address.removeprefix("ray://")
    host = rest.rpartition(":")[0] if ":" in rest else rest
    return host or None


def reach(address: str) -> str:
    """This machine's address on the way to the cluster's head (where agents call back)."""
    head = _head_host(address)
    if head is None or head == "auto":
        import ray

        return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((socket.gethostbyname(head), 9))  # no packet: only picks the route
        return str(sock.getsockname()[0])


def connect(address: str) -> Any:
    """The ``ray`` module, connected to ``address`` (once per process); ``Inconclusive``
    when Ray is not installed."""
    try:
        import ray
    except ImportError:
        raise Inconclusive("--cluster needs Ray: pip install 'mwsim[ray]'") from None

    if ray.is_initialized():
        if _connected and _connected[-1] == address:
            return ray
        ray.shutdown()
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError):  # a client server that failed to start its
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)  # half
    _connected.append(address)
    return ray


def disconnect() -> None:
    """End this process's connection to a cluster (before that cluster goes away)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    _connected.clear()


class RaySite:
    """The controller's handle on one node's host actor (a ``Site``)."""

    def __init__(self, host: str, info: Mapping[str, Any], conn: Any, logs: Path) -> None:
        self.name = host
        self.info = dict(info)
        self.conn = conn
        self.logs = logs
        self.log = logs / f"zygote-{host}.log"
        self._loaded: dict[str, str | None] = {}
        self._exits: list[wire.Reaped] = []
        self._replies: list[Message] = []
        self._stopped: dict[int, bool] = {}
        self._log_of: dict[int, Path] = {}
        self._ids = itertools.count()
        self._checked: dict[str, Any] = {"node": info["node"], "address": info["address"]}
        self.gone: str | None = None  # why the channel ended early

    @property
    def pid(self) -> int:
        return int(self.info["zygote"])

    @property
    def loaded(self) -> dict[str, str | None]:
        return self._loaded

    def fileno(self) -> int:
        return int(self.conn.fileno())

    def _take(self) -> None:
        try:
            while self.gone is None and self.conn.poll():
                message = wire.decode(channel.recv_json(self.conn))
                if isinstance(message, wire.Reaped):
                    path = self._log_of.get(message.pid)
                    if path is not None:
                        path.write_text(message.log or "")
                    self._exits.append(replace(message, log=None))
                elif isinstance(message, wire.State):
                    self._stopped[message.pgid] = message.stopped
                else:
                    self._replies.append(message)
        except (EOFError, OSError, ValueError) as exc:
            self.gone = f"the host actor of {self.name} is gone ({exc or type(exc).__name__})"

    def _until(
        self,
        match: Callable[[Message], bool],
        timeout_s: float,
        check: Callable[[], None] | None = None,
    ) -> Message:
        """The first reply ``match`` accepts; ``check`` (if any) is called at least every
        0.1 s meanwhile (it may raise: a trapped Ctrl-C)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._take()
            for message in self._replies:
                if match(message):
                    self._replies.remove(message)
                    return message
            if self.gone is not None:
                raise ZygoteError(self.gone)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ZygoteError(f"the host actor of {self.name} did not answer in time")
            self.conn.poll(left if check is None else min(left, 0.1))
            if check is not None:
                check()

    def _send(self, message: Message) -> None:
        try:
            channel.send_json(self.conn, wire.encode(message))
        except OSError as exc:
            self.gone = f"the host actor of {self.name} is gone ({exc})"
            raise ZygoteError(self.gone) from exc

    def lost(self) -> str | None:
        self._take()
        return self.gone

    def wait_ready(self, timeout_s: float, check: Callable[[], None] | None = None) -> None:
        if self._loaded:
            return
        ready = (wire.SiteReady, wire.SiteFailed)
        message = self._until(lambda m: isinstance(m, ready), timeout_s, check)
        if isinstance(message, wire.SiteFailed):
            raise ZygoteError(f"on {self.name}: {message.why}")
        assert isinstance(message, wire.SiteReady)
        self._loaded = dict(message.loaded) or {"": None}

    def fork(self, boot: dict[str, Any], log: Path) -> int:
        ident = next(self._ids)
        request = {k: v for k, v in boot.items() if k != "authkey"}  # the node derives it
        self._send(wire.Fork(ident, request, log.name))
        reply = self._until(lambda m: isinstance(m, wire.Forked) and m.ident == ident, REPLY_S)
        assert isinstance(reply, wire.Forked)
        if reply.pid is None:
            raise ZygoteError(f"on {self.name}: {reply.error}")
        self._log_of[reply.pid] = log
        return reply.pid

    def read(self) -> list[wire.Reaped]:
        self._take()
        out, self._exits = self._exits, []
        return out

    def signal(self, pgid: int, signum: int) -> None:
        with contextlib.suppress(ZygoteError):
            self._send(wire.Signal(pgid, int(signum)))

    def is_stopped(self, pid: int) -> bool:
        self._take()
        return self._stopped.get(pid, False)

    def free_port(self) -> int:
        ident = next(self._ids)
        self._send(wire.WantPort(ident))
        reply = self._until(lambda m: isinstance(m, wire.FreePort) and m.ident == ident, REPLY_S)
        assert isinstance(reply, wire.FreePort)
        return reply.port

    def close(self, groups: Iterable[int], ports: Iterable[int]) -> Leftovers:
        """Have the node stop its fork server and check its agents and ports are gone."""
        try:
            self._send(wire.Close(list(groups), list(ports)))
            reply = self._until(lambda m: isinstance(m, wire.Closed), REPLY_S)
            assert isinstance(reply, wire.Closed)
        except ZygoteError as exc:
            self._checked["checked"] = False
            self._checked["why"] = str(exc)
            return Leftovers((), (), unchecked=(f"{self.name} ({exc})",))
        finally:
            with contextlib.suppress(OSError):
                self.conn.close()
        for name, text in reply.logs.items():
            target = self.log if name == "zygote.log" else self.logs / Path(name).name
            target.write_text(text)
        left = {"groups": reply.groups, "ports": reply.ports}
        self._checked.update(reply.checked, checked=True, left=left)
        return Leftovers(tuple(reply.groups), tuple(reply.ports))

    def checked(self) -> dict[str, Any]:
        return self._checked


class RayNodes:
    """A run's hosts on a Ray cluster (a ``Network``): placement, host actors, teardown."""

    kind = "ray"

    def __init__(self, spec: str, hosts: Sequence[str], gpus: Mapping[str, int]) -> None:
        self.spec = spec
        self.cluster, secret = resolve(spec)
        self.nonce = secrets.token_hex(16)
        self.key = run_key(secret, self.nonce)
        self.gpus = dict(gpus)
        try:
            ray = connect(self.cluster)
            nodes = nodes_of(ray.nodes())
        except Inconclusive:
            raise
        except Exception as exc:  # Ray's own errors: the cluster is not reachable
            raise Inconclusive(f"cannot reach the Ray cluster at {self.cluster}: {exc}") from exc
        self.placement = place(hosts, self.gpus, nodes)
        self.controller = reach(self.cluster)
        self.actors: dict[str, Any] = {}
        self.sites: dict[str, RaySite] = {}
        view = cluster.view(self.cluster, {h: n.address for h, n in self.placement.items()})
        #: Network faults, where the nodes are the local cluster's emulated hosts.
        self.faults = NetFaults(view) if view is not None else None

    def unavailable_for(self, event: AnyEvent) -> str | None:
        """Why this cluster cannot inject ``event`` (None: it can; what this machine lacks
        for it, the controller checks as for every run)."""
        if not event.info.network:
            return None
        if self.faults is None:
            return (
                "network faults on a Ray cluster need the nodes' links: only the local "
                "cluster's (mwsim cluster start) are reachable"
            )
        if isinstance(event, PowerOff):
            return "power_off would cut a Ray node's host actor off from the controller"
        return None

    # -- the Network protocol ---------------------------------------------------------------

    def up(self) -> None:
        pass

    def address(self, host: str) -> str:
        return self.placement[host].address

    def netns(self, host: str) -> str | None:
        return None  # agents are born on their node

    def ifname(self, host: str) -> str | None:
        site = self.sites.get(host)
        return None if site is None else site.info.get("ifname")

    def free_port(self, host: str) -> int:
        return self.sites[host].free_port()

    def describe(self) -> dict[str, Any]:
        placement = {}
        for host, node in self.placement.items():
            entry: dict[str, Any] = {
                "node": node.id,
                "address": node.address,
                "claimed": host in node.claims,
            }
            if host in self.sites:
                info = self.sites[host].info
                entry.update(actor_pid=info["pid"], hostname=info["hostname"])
            placement[host] = entry
        return {
            "kind": self.kind,
            "cluster": self.cluster,
            "controller": self.controller,
            "placement": placement,
        }

    @property
    def listen_on(self) -> str:
        """Agents on the nodes connect to the controller here (TCP)."""
        return self.controller

    def started(self) -> Mapping[str, RaySite]:
        return self.sites

    def with_down(self, found: Leftovers, down: tuple[str, ...]) -> Leftovers:
        return replace(found, cluster=down)

    def open_sites(self, runtime: str, logs: Path, timeout_s: float) -> dict[str, RaySite]:
        """One host actor per placed node, each with its fork server started; ``BringUpFailed``
        when one cannot start."""
        ray = connect(self.cluster)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = ray.remote(HostActor)
        for host, node in self.placement.items():
            self.actors[host] = remote.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node.id, soft=False),
                num_cpus=0,
                num_gpus=self.gpus.get(host, 0),
                max_restarts=0,
            ).remote(host, runtime, self.nonce)
        refs = {host: actor.start.remote(timeout_s) for host, actor in self.actors.items()}
        try:
            infos = dict(zip(refs, ray.get(list(refs.values()), timeout=timeout_s), strict=True))
        except Exception as exc:
            raise BringUpFailed(f"the host actors did not start: {exc}") from exc
        for host, info in infos.items():
            conn = channel.connect(f"{channel.TCP}{info['address']}:{info['port']}", self.key)
            self.sites[host] = RaySite(host, info, conn, logs)
        return self.sites

    def down(self) -> list[str]:
        """End every host actor and confirm Ray has it dead; what is still there."""
        left = []
        if self.faults is not None:
            left += [f"network fault of event {key}" for key in self.faults.clear()]
            self.faults.fabric.down()
        if not self.actors:
            return left
        import ray

        for actor in self.actors.values():
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        for host, actor in self.actors.items():
            try:
                ray.get(actor.ping.remote(), timeout=REPLY_S)
                left.append(f"host actor of {host} still answers")
            except ray.exceptions.RayActorError:
                pass  # dead, as Ray says
            except Exception as exc:
                left.append(f"host actor of {host}: {type(exc).__name__}")
        self.actors.clear()
        return left
