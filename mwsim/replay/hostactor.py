"""The side of a Ray cluster run that runs on a node: the host actor.

One ``HostActor`` is pinned to each placed node (:mod:`mwsim.replay.raynodes` places
them). It runs that node's warm fork server, forks the node's agents, signals them, reaps
them and checks what they left on the node, answering the controller's typed messages
(:mod:`mwsim.replay.sitewire`) on the authenticated channel, keyed by a run key both ends
derive from the cluster's secret and a per-run nonce, so no secret crosses the wire.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from mwsim.errors import ZygoteError
from mwsim.hosts.cluster import SECRET_ENV
from mwsim.replay import channel, processes
from mwsim.replay import sitewire as wire
from mwsim.replay.protocol import NODE_ENV, Message
from mwsim.replay.zygote import Zygote

LOG_TAIL_BYTES = 256 * 1024
WATCH_S = 2.0  # how long a host actor watches a stopped or continued agent's state
REPLY_S = 30.0
_STATE_SIGNALS = {int(signal.SIGSTOP): True, int(signal.SIGCONT): False}
_IFNAME_ENVS = {"GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"}  # a node's own choice wins


def run_key(secret: bytes, nonce: str) -> bytes:
    """The run's channel key: both ends derive it, only ``nonce`` travels."""
    return hmac.new(secret, b"mwsim-run:" + nonce.encode(), hashlib.sha256).digest()


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
            raise ZygoteError(f"node {address} was started without {SECRET_ENV}")
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

    def send(self, message: Message) -> None:
        channel.send_json(self.conn, wire.encode(message))

    def serve(self, listener: Any) -> None:
        try:
            self.conn = channel.accept(listener, self.key, REPLY_S)
        finally:
            listener.close()
        try:
            try:
                self.zygote.wait_ready(self.bringup_s)
                self.send(wire.SiteReady(self.zygote.pid, self.zygote.loaded))
            except ZygoteError as exc:
                self.send(wire.SiteFailed(f"{exc}\n{_tail(self.zygote.log)[-2000:]}"))
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
        for reaped in self.zygote.read():
            log = _tail(self.logs.get(reaped.pid, self.home / "none"))
            self.send(replace(reaped, log=log))
        self._watch()
        while self.conn.poll():
            if not self._handle(wire.decode(channel.recv_json(self.conn))):
                return False
        return True

    def _watch(self) -> None:
        now = time.monotonic()
        for pgid, (wanted, until) in list(self.watching.items()):
            state = processes.is_stopped(pgid)
            if state == wanted or now >= until:
                del self.watching[pgid]
                self.send(wire.State(pgid, state))

    def _handle(self, message: Message) -> bool:
        match message:
            case wire.Fork(ident, boot, log):
                boot = {**boot, "authkey": self.key.hex(), "parent_pid": self.zygote.pid}
                path = self.home / Path(log).name
                try:
                    pid = self.zygote.fork(boot, path)
                except ZygoteError as exc:
                    self.send(wire.Forked(ident, error=str(exc)))
                    raise
                self.logs[pid] = path
                self.send(wire.Forked(ident, pid))
            case wire.Signal(pgid, signum):
                processes.signal_group(pgid, signum)
                if signum in _STATE_SIGNALS:
                    self.watching[pgid] = (_STATE_SIGNALS[signum], time.monotonic() + WATCH_S)
            case wire.WantPort(ident):
                self.send(wire.FreePort(ident, processes.free_port(self.address)))
            case wire.Close(groups, ports):
                with contextlib.suppress(ZygoteError):
                    self.zygote.stop()
                groups = [*groups, self.zygote.pid]
                found = processes.leftovers(groups, ports)
                logs = {p.name: _tail(p) for p in self.home.glob("*.log")}
                checked = {"process_groups": len(groups), "ports": len(ports)}
                self.send(wire.Closed(checked, list(found.groups), list(found.ports), logs))
                return False
            case _:
                raise ValueError(f"a host actor does not take {message.TYPE}")
        return True
