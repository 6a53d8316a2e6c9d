"""Ray nodes as hosts: each topology host on one node of a Ray cluster, a host actor on each.

With ``--cluster``, a run's network is ``RayNodes``: it connects to the cluster, places
each topology host on one alive node (a node that claims it with the custom resource
``mwsim-host-<name>`` first, the others on the remaining nodes with a CPU, respecting
``gpus:`` on NCCL runs), and starts one ``HostActor`` pinned to each placed node. The
actor runs that node's warm fork server, forks the node's agents, signals them, reaps them
and checks what they left on the node; the controller drives it as a ``RaySite`` over the
authenticated JSON channel (:mod:`mwsim.replay.channel`), keyed by a run key both ends
derive from the cluster's secret and a per-run nonce, so no secret crosses the wire. Ray
places and ends the actors; everything else is the replay's own machinery. Ray is imported
only here, and only when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import logging
import os
import secrets
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from mwsim.errors import BringUpFailed, Inconclusive, ZygoteError
from mwsim.events import AnyEvent, PowerOff
from mwsim.hosts import cluster
from mwsim.hosts.cluster import RESOURCE_PREFIX, SECRET_ENV, read_state
from mwsim.hosts.netfaults import NetFaults
from mwsim.replay import channel, processes
from mwsim.replay.processes import Leftovers
from mwsim.replay.protocol import NODE_ENV
from mwsim.replay.zygote import Zygote

LOG_TAIL_BYTES = 256 * 1024
WATCH_S = 2.0  # how long a host actor watches a stopped or continued agent's state
REPLY_S = 30.0
_STATE_SIGNALS = {int(signal.SIGSTOP): True, int(signal.SIGCONT): False}
_IFNAME_ENVS = {"GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"}  # a node's own choice wins
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


def run_key(secret: bytes, nonce: str) -> bytes:
    """The run's channel key: both ends derive it, only ``nonce`` travels."""
    return hmac.new(secret, b"mwsim-run:" + nonce.encode(), hashlib.sha256).digest()


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


# -- on the node -----------------------------------------------------------------------------


def _ifname(address: str) -> str | None:
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == address for a in addrs):
            return str(name)
    return None


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class HostActor:
    """One node's part of a run, as a Ray actor: the fork server, the agents' signals,
    exits and hygiene there. ``start`` returns where the controller reaches it."""

    def __init__(self, host: str, runtime: str, nonce: str) -> None:
        self.host, self.runtime, self.nonce = host, runtime, nonce

    def start(self, bringup_s: float) -> dict[str, Any]:
        import ray

        node = str(ray.get_runtime_context().get_node_id())
        address = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
        secret = os.environ.get(SECRET_ENV, "")
        if not secret:
            return {"error": f"node {address} was started without {SECRET_ENV}"}
        key = run_key(secret.encode(), self.nonce)
        home = Path(tempfile.mkdtemp(prefix="mwsim-node-"))
        env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.update({"PYTHONUNBUFFERED": "1", NODE_ENV: node, "NCCL_HOSTID": node})
        zygote = Zygote(self.runtime, home / "zygote.log", env)
        listener = channel.listen((address, 0))
        port = int(listener.address[1])
        node_loop = NodeLoop(zygote, key, home, address, bringup_s)
        threading.Thread(target=node_loop.serve, args=(listener,), daemon=True).start()
        return {
            "node": node,
            "address": address,
            "port": port,
            "pid": os.getpid(),
            "zygote": zygote.pid,
            "ifname": None if _IFNAME_ENVS & set(env) else _ifname(address),
            "hostname": socket.gethostname(),
        }

    def ping(self) -> int:
        return os.getpid()


class NodeLoop:
    """The host actor's side of the channel: do what the controller asks, report exits."""

    def __init__(self, zygote: Zygote, key: bytes, home: Path, address: str, bringup_s: float):
        self.zygote, self.key, self.home, self.address = zygote, key, home, address
        self.bringup_s = bringup_s
        self.logs: dict[int, Path] = {}
        self.watching: dict[int, tuple[bool, float]] = {}  # pgid -> (stopped?, until)
        self.conn: Any = None

    def send(self, message: dict[str, Any]) -> None:
        channel.send_json(self.conn, message)

    def serve(self, listener: Any) -> None:
        try:
            self.conn = channel.accept(listener, self.key, REPLY_S)
        finally:
            listener.close()
        try:
            try:
                self.zygote.wait_ready(self.bringup_s)
                self.send({"ready": self.zygote.pid, "loaded": self.zygote.loaded})
            except ZygoteError as exc:
                self.send({"error": f"{exc}\n{_tail(self.zygote.log)[-2000:]}"})
            while self._turn():
                pass
        except (EOFError, OSError, ValueError, ZygoteError):
            pass  # the controller is gone (or spoke nonsense), or the fork server: end
        finally:
            with contextlib.suppress(ZygoteError, OSError):
                self.zygote.stop()
            shutil.rmtree(self.home, ignore_errors=True)
        os._exit(0)  # the actor ends with its run; Ray does not restart it

    def _turn(self) -> bool:
        if not self.zygote.alive:  # its agents died with it: the run cannot go on here
            return False
        fds = [self.conn.fileno(), self.zygote.fileno()]
        select.select(fds, [], [], 0.01 if self.watching else 1.0)
        for report in self.zygote.read():
            if "exit" in report:
                pid = int(report["exit"])
                self.send({**report, "log": _tail(self.logs.get(pid, self.home / "none"))})
        self._watch()
        while self.conn.poll():
            if not self._handle(channel.recv_json(self.conn)):
                return False
        return True

    def _watch(self) -> None:
        now = time.monotonic()
        for pgid, (wanted, until) in list(self.watching.items()):
            state = processes.is_stopped(pgid)
            if state == wanted or now >= until:
                del self.watching[pgid]
                self.send({"state": pgid, "stopped": state})

    def _handle(self, message: dict[str, Any]) -> bool:
        if "fork" in message:
            boot = {**message["boot"], "authkey": self.key.hex(), "parent_pid": self.zygote.pid}
            log = self.home / Path(str(message["log"])).name
            try:
                pid = self.zygote.fork(boot, log)
            except ZygoteError as exc:
                self.send({"forked": message["fork"], "error": str(exc)})
                raise
            self.logs[pid] = log
            self.send({"forked": message["fork"], "pid": pid})
        elif "signal" in message:
            pgid, signum = int(message["signal"]), int(message["sig"])
            processes.signal_group(pgid, signum)
            if signum in _STATE_SIGNALS:
                self.watching[pgid] = (_STATE_SIGNALS[signum], time.monotonic() + WATCH_S)
        elif "port" in message:
            self.send({"port": message["port"], "value": processes.free_port(self.address)})
        elif "close" in message:
            with contextlib.suppress(ZygoteError):
                self.zygote.stop()
            groups = [*map(int, message["groups"]), self.zygote.pid]
            ports = [int(p) for p in message["ports"]]
            found = processes.leftovers(groups, ports)
            logs = {p.name: _tail(p) for p in self.home.glob("*.log")}
            checked = {"process_groups": len(groups), "ports": len(ports)}
            left = {"groups": list(found.groups), "ports": list(found.ports)}
            self.send({"closed": checked, "left": left, "logs": logs})
            return False
        else:
            raise ValueError(f"unknown request {sorted(message)[:4]}")
        return True


# -- on the controller -----------------------------------------------------------------------


class RaySite:
    """The controller's handle on one node's host actor (a ``Site``)."""

    def __init__(self, host: str, info: Mapping[str, Any], conn: Any, logs: Path) -> None:
        self.name = host
        self.info = dict(info)
        self.conn = conn
        self.logs = logs
        self.log = logs / f"zygote-{host}.log"
        self._loaded: dict[str, str | None] = {}
        self._exits: list[dict[str, Any]] = []
        self._replies: list[dict[str, Any]] = []
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
                message = channel.recv_json(self.conn)
                if "exit" in message:
                    path = self._log_of.get(int(message["exit"]))
                    if path is not None:
                        path.write_text(str(message.get("log", "")))
                    self._exits.append({"exit": message["exit"], "code": message["code"]})
                elif "state" in message:
                    self._stopped[int(message["state"])] = bool(message["stopped"])
                else:
                    self._replies.append(message)
        except (EOFError, OSError, ValueError) as exc:
            self.gone = f"the host actor of {self.name} is gone ({exc or type(exc).__name__})"

    def _until(self, match: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
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
            self.conn.poll(left)

    def _send(self, message: dict[str, Any]) -> None:
        try:
            channel.send_json(self.conn, message)
        except OSError as exc:
            self.gone = f"the host actor of {self.name} is gone ({exc})"
            raise ZygoteError(self.gone) from exc

    def lost(self) -> str | None:
        self._take()
        return self.gone

    def wait_ready(self, timeout_s: float) -> None:
        if self._loaded:
            return
        message = self._until(lambda m: "ready" in m or "error" in m, timeout_s)
        if "error" in message:
            raise ZygoteError(f"on {self.name}: {message['error']}")
        self._loaded = dict(message.get("loaded") or {}) or {"": None}

    def fork(self, boot: dict[str, Any], log: Path) -> int:
        ident = next(self._ids)
        request = {k: v for k, v in boot.items() if k != "authkey"}  # the node derives it
        self._send({"fork": ident, "boot": request, "log": log.name})
        reply = self._until(lambda m: m.get("forked") == ident, REPLY_S)
        if "error" in reply:
            raise ZygoteError(f"on {self.name}: {reply['error']}")
        pid = int(reply["pid"])
        self._log_of[pid] = log
        return pid

    def read(self) -> list[dict[str, Any]]:
        self._take()
        out, self._exits = self._exits, []
        return out

    def signal(self, pgid: int, signum: int) -> None:
        with contextlib.suppress(ZygoteError):
            self._send({"signal": pgid, "sig": int(signum)})

    def is_stopped(self, pid: int) -> bool:
        self._take()
        return self._stopped.get(pid, False)

    def free_port(self) -> int:
        ident = next(self._ids)
        self._send({"port": ident})
        return int(self._until(lambda m: m.get("port") == ident, REPLY_S)["value"])

    def close(self, groups: Iterable[int], ports: Iterable[int]) -> Leftovers:
        """Have the node stop its fork server and check its agents and ports are gone."""
        try:
            self._send({"close": True, "groups": list(groups), "ports": list(ports)})
            reply = self._until(lambda m: "closed" in m, REPLY_S)
        except ZygoteError as exc:
            self._checked["checked"] = False
            self._checked["why"] = str(exc)
            return Leftovers((), (), unchecked=(f"{self.name} ({exc})",))
        finally:
            with contextlib.suppress(OSError):
                self.conn.close()
        for name, text in reply.get("logs", {}).items():
            target = self.log if name == "zygote.log" else self.logs / Path(name).name
            target.write_text(str(text))
        left = reply.get("left", {})
        self._checked.update(reply["closed"], checked=True, left=left)
        return Leftovers(tuple(left.get("groups", ())), tuple(left.get("ports", ())))

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

    def start_sites(self, runtime: str, logs: Path, timeout_s: float) -> dict[str, RaySite]:
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
            if "error" in info:
                raise BringUpFailed(f"the host actor of {host} could not start: {info['error']}")
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
