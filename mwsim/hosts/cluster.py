"""A local multi-node Ray cluster on this machine, each node in an emulated host.

``start(n)`` makes a switch namespace, a head namespace and ``n`` node namespaces on
198.19.0.0/24 (inside 198.18.0.0/15, the test hosts' range), links this machine's own
namespace to the switch (``mwsimc-up`` at 198.19.0.254: the driver's only way in), and
starts Ray in each: the head with no CPUs (it places nothing; it runs the GCS and the
client server), node ``i`` claiming ``mwsim-host-h<i>``. Every Ray process is given its
node's address and its namespace has no route anywhere else, so no packet of the cluster
can go to another address — not even this machine's external one, which Ray would
otherwise substitute for a loopback address (ray-project/ray#59110). ``stop`` kills every
process in the namespaces, deletes them (the link goes with them) and the state.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from mwsim.hosts import emulated

PREFIX = "mwsimc-"  # not emulated.PREFIX: a cluster outlives the command that started it
SWITCH, HEAD, UPLINK = f"{PREFIX}sw", f"{PREFIX}head", f"{PREFIX}up"
SUBNET = ipaddress.ip_network("198.19.0.0/24")
HEAD_ADDRESS, UPLINK_ADDRESS = "198.19.0.1", "198.19.0.254"
FIRST_NODE = 10  # node i is 198.19.0.(10 + i)
MAX_NODES = 200
GCS_PORT, CLIENT_PORT = 6379, 10001
STATE_DIR = Path("/run/mwsim-cluster")
STATE = STATE_DIR / "state.json"
SECRET = STATE_DIR / "secret"
TEMP = STATE_DIR / "ray"  # Ray's sessions and logs, every node's
SECRET_ENV = "MWSIM_CLUSTER_SECRET"
RESOURCE_PREFIX = "mwsim-host-"
START_TIMEOUT_S = 180
OBJECT_STORE_BYTES = 80 * 1000 * 1000  # Ray's minimum is 75 MB; the runs store nothing
_RAY_MAIN = "import sys; from ray.scripts.scripts import main; sys.exit(main())"


class ClusterError(RuntimeError):
    """The local cluster could not be started (what was made is removed again)."""


def node_address(i: int) -> str:
    return str(SUBNET.network_address + FIRST_NODE + i)


def node_namespace(i: int) -> str:
    return f"{PREFIX}{i}"


def read_state() -> dict[str, Any] | None:
    """The running local cluster's state, None when there is none."""
    try:
        data: dict[str, Any] = json.loads(STATE.read_text())
    except (OSError, ValueError):
        return None
    return data


def namespaces() -> list[str]:
    """The local cluster's namespaces present on this machine."""
    if not emulated.NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in emulated.NETNS_DIR.iterdir() if p.name.startswith(PREFIX))


def _fabric(nodes: int) -> None:
    ns = [SWITCH, HEAD, *(node_namespace(i) for i in range(nodes))]
    addresses = {HEAD: HEAD_ADDRESS} | {node_namespace(i): node_address(i) for i in range(nodes)}
    lines = [f"netns add {name}" for name in ns]
    lines.append(f"link add {UPLINK} type veth peer name pup netns {SWITCH}")
    lines += [
        f"link add {emulated.IFNAME} netns {name} type veth peer name p{k} netns {SWITCH}"
        for k, name in enumerate(addresses)
    ]
    lines += [f"addr add {UPLINK_ADDRESS}/{SUBNET.prefixlen} dev {UPLINK}", f"link set {UPLINK} up"]
    emulated.run(["ip", "-batch", "-"], stdin="\n".join(lines) + "\n")
    ports = ["pup", *(f"p{k}" for k in range(len(addresses)))]
    switch = ["link set lo up", "link add br0 type bridge", "link set br0 up"]
    switch += [f"link set {port} master br0\nlink set {port} up" for port in ports]
    emulated.run(["ip", "-n", SWITCH, "-batch", "-"], stdin="\n".join(switch) + "\n")
    for name, address in addresses.items():
        host = [
            "link set lo up",
            f"addr add {address}/{SUBNET.prefixlen} dev {emulated.IFNAME}",
            f"link set {emulated.IFNAME} up",
        ]
        emulated.run(["ip", "-n", name, "-batch", "-"], stdin="\n".join(host) + "\n")


def _ray_start(namespace: str, args: list[str], secret: str) -> None:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env.update(
        {
            SECRET_ENV: secret,  # in the environment, not on a command line
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p),
        }
    )
    command = ["ip", "netns", "exec", namespace, sys.executable, "-c", _RAY_MAIN, "start"]
    common = [
        "--disable-usage-stats",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--temp-dir={TEMP}",
    ]
    done = subprocess.run(
        [*command, *args, *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise ClusterError(f"ray start in {namespace} failed: {tail}")


_PROBE = """
import sys, ray
ray.init(sys.argv[1], logging_level="ERROR", log_to_driver=False)
alive = [n for n in ray.nodes() if n["Alive"]]
ray.shutdown()
sys.exit(0 if len(alive) == int(sys.argv[2]) else 3)
"""


def _probe(nodes: int, attempts: int = 3) -> None:
    """Connect a client as a run will, and see every node alive (the client server's first
    connection can fail on a loaded machine; a fresh one then succeeds)."""
    address = f"ray://{HEAD_ADDRESS}:{CLIENT_PORT}"
    for _ in range(attempts):
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, address, str(nodes + 1)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if done.returncode == 0:
            return
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
    raise ClusterError(f"the cluster does not answer a client with {nodes + 1} nodes: {tail}")


def start(nodes: int, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Start the local cluster with ``nodes`` nodes (or return the one running, if it has
    as many); its state. ``ClusterError`` (with nothing left behind) when it cannot."""
    if not 1 <= nodes <= MAX_NODES:
        raise ClusterError(f"--nodes must be 1..{MAX_NODES}, not {nodes}")
    reason = emulated.unavailable()
    if reason is not None:
        raise ClusterError(f"a local cluster lives in emulated hosts, but {reason}")
    state = read_state()
    if state is not None and len(namespaces()) == state["nodes"] + 2:
        if state["nodes"] != nodes:
            raise ClusterError(
                f"a local cluster of {state['nodes']} node(s) runs; mwsim cluster stop first"
            )
        return state
    stop()  # whatever a failed or half-removed start left
    started = time.monotonic()
    try:
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = secrets.token_hex(32)
        SECRET.touch(mode=0o600)
        SECRET.write_text(secret)
        _fabric(nodes)
        say(f"head at {HEAD_ADDRESS}")
        _ray_start(
            HEAD,
            [
                "--head",
                f"--node-ip-address={HEAD_ADDRESS}",
                f"--port={GCS_PORT}",
                f"--ray-client-server-port={CLIENT_PORT}",
                "--num-cpus=0",
                "--include-dashboard=false",
            ],
            secret,
        )
        for i in range(nodes):  # one at a time: on a small machine the GCS times out on more
            say(f"node {i} at {node_address(i)} claiming {RESOURCE_PREFIX}h{i}")
            _ray_start(
                node_namespace(i),
                [
                    f"--address={HEAD_ADDRESS}:{GCS_PORT}",
                    f"--node-ip-address={node_address(i)}",
                    "--num-cpus=1",
                    f"--resources={json.dumps({f'{RESOURCE_PREFIX}h{i}': 1})}",
                ],
                secret,
            )
        _probe(nodes)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        stop()
        if isinstance(exc, ClusterError):
            raise
        raise ClusterError(str(exc)) from exc
    except BaseException:
        stop()
        raise
    state = {
        "address": f"ray://{HEAD_ADDRESS}:{CLIENT_PORT}",
        "gcs": f"{HEAD_ADDRESS}:{GCS_PORT}",
        "nodes": nodes,
        "node_addresses": [node_address(i) for i in range(nodes)],
        "secret_file": str(SECRET),
        "started_s": round(time.monotonic() - started, 2),
    }
    STATE.write_text(json.dumps(state, indent=1))
    return state


def stop() -> list[str]:
    """Kill everything in the local cluster's namespaces and delete them and its state;
    what was removed."""
    present = namespaces()
    emulated.remove(present)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    if Path(f"/sys/class/net/{UPLINK}").exists():  # its peer was in the switch: normally gone
        emulated.run(["ip", "link", "del", UPLINK], check=False)
    return present


def leftovers() -> list[str]:
    """What of a local cluster is still on this machine (after ``stop``: nothing): its
    namespaces, its link, its state, and any process anywhere started for it (Ray's
    processes name its session directory)."""
    found = namespaces()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(str(STATE_DIR) in part for part in proc.info["cmdline"] or ()):
            found.append(f"process {proc.pid}")
    if Path(f"/sys/class/net/{UPLINK}").exists():
        found.append(f"link {UPLINK}")
    if STATE_DIR.exists():
        found.append(str(STATE_DIR))
    return found


class View(emulated.Fabric):
    """The local cluster's switch and node namespaces as a run's fabric, so that network
    faults act on a Ray-placed deployment: ``hosts`` maps each topology host to its node's
    address. ``down`` only ends the fault helpers: the cluster outlives the run."""

    def __init__(self, hosts: dict[str, str], state: dict[str, Any]) -> None:
        super().__init__(list(hosts))
        index = {address: i for i, address in enumerate(state["node_addresses"])}
        self.run_id = PREFIX.rstrip("-")
        self.switch = SWITCH
        self.names = {host: node_namespace(index[address]) for host, address in hosts.items()}
        self.ports = {host: f"p{index[address] + 1}" for host, address in hosts.items()}  # p0: head
        self.addresses = dict(hosts)
        self.is_up = True

    def up(self) -> None:
        pass

    def down(self) -> list[str]:
        self.end_helpers()
        return []


def view(address: str, hosts: dict[str, str]) -> View | None:
    """A fabric over the local cluster's nodes at these addresses (host -> address), None
    unless the cluster at ``address`` is the local one and holds them all."""
    state = read_state()
    if state is None or state.get("address") != address:
        return None
    if not set(hosts.values()) <= set(state.get("node_addresses", [])):
        return None
    return View(hosts, state)
