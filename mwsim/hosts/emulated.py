"""Emulated hosts: one network namespace per topology host, linked to a per-run switch.

Host number ``i`` of a run is the namespace ``mwsim-<pid>-<run>-<i>`` with one interface
``veth0`` at ``198.18.0.<i+1>/15``; its peer ``p<i>`` is a port of the bridge ``br0`` in
the run's switch namespace ``mwsim-<pid>-<run>-sw``. Agents join their host's namespace
right after they are forked, so their world stores and gloo (or NCCL socket) pairs use
only those links, and network faults act on the switch or on a host's link. Traffic
never leaves the run: the switch has no uplink, and nothing routes to 198.18.0.0/15
from outside.

Nothing of a run outlives it: ``down`` kills every process still inside the run's
namespaces (agents, the delay daemon), then deletes the namespaces, which take their
links, the bridge, nft tables and qdiscs with them. A run whose controller died is
recognised by its names (the controller's pid, and a namespace older than any process
with that pid) and cleaned by the next run or ``mwsim clean``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

PREFIX = "mwsim-"
NETWORK = ipaddress.ip_network("198.18.0.0/15")
NETNS_DIR = Path("/run/netns")
IFNAME = "veth0"  # every host's one interface (GLOO_SOCKET_IFNAME)
CLONE_NEWNET = 0x40000000
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
TOOLS = ("ip", "nft", "iptables", "tc")
_runs = itertools.count()
_checked: list[str | None] = []


def run(args: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
    """Run a network tool; ``RuntimeError`` with its message if it fails."""
    done = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:6])}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def unavailable() -> str | None:
    """Why emulated hosts cannot be used on this machine (None when they can); the answer
    of a real probe (a namespace pair with a link, made and removed), kept per process."""
    if _checked:
        return _checked[0]
    reason: str | None = None
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    caps = _capabilities() if sys.platform.startswith("linux") else 0
    if not sys.platform.startswith("linux"):
        reason = "emulated hosts need Linux network namespaces"
    elif not (caps >> CAP_NET_ADMIN & 1 and caps >> CAP_SYS_ADMIN & 1):
        reason = "emulated hosts need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    elif missing:
        reason = f"emulated hosts need {', '.join(missing)} (run make install as root)"
    else:
        try:
            probe = Fabric(["probe"])
            probe.up()
            probe.down()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            reason = f"cannot make network namespaces here: {exc}"
    _checked.append(reason)
    return reason


def setns(path: str) -> None:
    """Move the calling thread (a forked agent: the whole process) into a network namespace."""
    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def in_namespace(path: str, fn: Callable[[], Any]) -> Any:
    """Call ``fn`` in a thread that has joined the namespace at ``path`` (sockets it makes
    stay there); the caller's own namespace is untouched."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            setns(path)
            result.append(fn())
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=target, name="mwsim-netns")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


class Fabric:
    """The namespaces, links and switch of one run's hosts; ``up``, then ``down``."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.run_id = f"{PREFIX}{os.getpid()}-{next(_runs)}"
        self.hosts = list(hosts)
        self.switch = f"{self.run_id}-sw"
        self.names = {host: f"{self.run_id}-{i}" for i, host in enumerate(self.hosts)}
        self.ports = {host: f"p{i}" for i, host in enumerate(self.hosts)}
        first = int(NETWORK.network_address)
        self.addresses = {
            host: str(ipaddress.ip_address(first + i + 1)) for i, host in enumerate(self.hosts)
        }
        self.helpers: list[subprocess.Popen[str]] = []  # processes started in the switch
        self.is_up = False

    # -- where things are ----------------------------------------------------------------

    def address(self, host: str) -> str:
        return self.addresses[host]

    def netns(self, host: str) -> str:
        return str(NETNS_DIR / self.names[host])

    def namespaces(self) -> list[str]:
        return [self.switch, *self.names.values()]

    def free_port(self, host: str) -> int:
        """A TCP port free right now on ``host``'s address."""

        def bind() -> int:
            with socket.socket() as sock:
                sock.bind((self.address(host), 0))
                return int(sock.getsockname()[1])

        return int(in_namespace(self.netns(host), bind))

    def describe(self) -> dict[str, Any]:
        """What the history's ``run`` line says about the network."""
        return {
            "kind": "emulated",
            "subnet": str(NETWORK),
            "switch": self.switch,
            "hosts": {h: {"address": a, "netns": self.names[h]} for h, a in self.addresses.items()},
        }

    # -- commands in the run's namespaces --------------------------------------------------

    def ip(self, namespace: str | None, lines: Iterable[str]) -> None:
        """Run ``ip`` commands (one per line) in a namespace, in one process."""
        prefix = ["ip", "-n", namespace] if namespace else ["ip"]
        run([*prefix, "-batch", "-"], stdin="\n".join(lines) + "\n")

    def in_ns(self, namespace: str, args: Sequence[str], stdin: str | None = None) -> str:
        """Run a command inside one of the run's namespaces."""
        return run(["ip", "netns", "exec", namespace, *args], stdin)

    def nft(self, namespace: str, script: str) -> None:
        self.in_ns(namespace, ["nft", "-f", "-"], stdin=script)

    def nft_tables(self, namespace: str) -> dict[str, dict[str, Any]]:
        """The nft tables of a namespace, read back: ``{"family name": table JSON}``."""
        data = json.loads(self.in_ns(namespace, ["nft", "-j", "list", "ruleset"]) or "{}")
        tables: dict[str, dict[str, Any]] = {}
        for item in data.get("nftables", []):
            if "table" in item:
                table = item["table"]
                tables[f"{table['family']} {table['name']}"] = {"sets": {}, "rules": []}
            for kind in ("set", "rule"):
                if kind in item:
                    entry = item[kind]
                    key = f"{entry['family']} {entry['table']}"
                    if kind == "set":
                        tables[key]["sets"][entry["name"]] = sorted(entry.get("elem", []))
                    else:
                        tables[key]["rules"].append(entry)
        return tables

    def link_state(self, namespace: str, ifname: str) -> str:
        data = json.loads(self.in_ns(namespace, ["ip", "-j", "link", "show", ifname]) or "[]")
        return str(data[0].get("operstate", "UNKNOWN")) if data else "ABSENT"

    # -- lifecycle -----------------------------------------------------------------------

    def up(self) -> None:
        """Make the switch and every host, linked and addressed (about 20 ms per host)."""
        clean_dead()
        self.is_up = True
        lines = [f"netns add {self.switch}"]
        lines += [f"netns add {name}" for name in self.names.values()]
        lines += [
            f"link add {IFNAME} netns {self.names[h]} type veth peer name "
            f"{self.ports[h]} netns {self.switch}"
            for h in self.hosts
        ]
        self.ip(None, lines)
        switch = ["link set lo up", "link add br0 type bridge", "link set br0 up"]
        for port in self.ports.values():
            switch += [f"link set {port} master br0", f"link set {port} up"]
        self.ip(self.switch, switch)
        for host in self.hosts:
            self.ip(
                self.names[host],
                [
                    "link set lo up",
                    f"addr add {self.address(host)}/{NETWORK.prefixlen} dev {IFNAME}",
                    f"link set {IFNAME} up",
                ],
            )

    def end_helpers(self) -> None:
        """Kill and reap the processes started in the switch (the delay daemons)."""
        for helper in self.helpers:
            with contextlib.suppress(ProcessLookupError):
                helper.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                helper.wait(timeout=5)
        self.helpers.clear()

    def down(self) -> list[str]:
        """Kill what runs inside, delete the namespaces; what could not be removed."""
        if not self.is_up:
            return []
        self.end_helpers()
        remove(self.namespaces())
        self.is_up = False
        return leftovers(self.namespaces())


def pids_in(namespace: str) -> list[int]:
    """Processes whose network namespace is ``namespace``."""
    out = run(["ip", "netns", "pids", namespace], check=False)
    return [int(pid) for pid in out.split()]


def remove(namespaces: Iterable[str]) -> None:
    """Kill every process inside the namespaces, then delete them (in one ``ip`` call)."""
    present = [ns for ns in namespaces if (NETNS_DIR / ns).exists()]
    for namespace in present:
        for pid in pids_in(namespace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if present:
        run(["ip", "-force", "-batch", "-"], stdin="".join(f"netns del {ns}\n" for ns in present))


def leftovers(namespaces: Iterable[str]) -> list[str]:
    """Which of ``namespaces`` still exist (by name, or kept alive by a process in it)."""
    return [ns for ns in namespaces if (NETNS_DIR / ns).exists()]


def ours() -> list[str]:
    """Every mwsim namespace on this machine (any run's)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX))


def owner_gone(pid: int, made: float) -> bool:
    """Is the process ``pid`` that made something at ``made`` (a file time) gone, or its
    pid used by a newer process?"""
    try:
        owner = psutil.Process(pid)
        if owner.status() == psutil.STATUS_ZOMBIE:
            return True
        return bool(owner.create_time() > made + 1.0)
    except psutil.NoSuchProcess:
        return True


def _dead(namespace: str) -> bool:
    """Is the controller that made ``namespace`` gone (or its pid used by a newer process)?"""
    try:
        pid = int(namespace[len(PREFIX) :].split("-", 1)[0])
        made = (NETNS_DIR / namespace).stat().st_mtime
    except (ValueError, OSError):
        return False
    return owner_gone(pid, made)


def clean_dead() -> list[str]:
    """Remove the namespaces of runs whose controller died; their names."""
    dead = [ns for ns in ours() if _dead(ns)]
    remove(dead)
    return dead
