"""The parts of cluster runs that need no cluster: the channel, placement, the address and
secret a run uses, the command line's checks."""

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from mwsim.errors import Inconclusive
from mwsim.replay import channel, raynodes
from mwsim.replay.processes import Leftovers
from mwsim.replay.raynodes import Node, nodes_of, place, resolve, run_key

ROOT = Path(__file__).parents[2]


def _pair(server_key: bytes, client_key: bytes):
    """A listener with ``server_key`` and a client with ``client_key``: (server side's
    connection or error, client side's connection or error)."""
    home = tempfile.mkdtemp()
    listener = channel.listen(str(Path(home) / "s"))
    got: list = []

    def serve():
        conn = listener.accept()
        try:
            got.append(channel.serve_handshake(conn, server_key, 5) or "ok")
        except Exception as exc:
            got.append(exc)
            conn.close()  # as channel.accept does

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client = channel.connect(channel.describe(listener), client_key)
    except Exception as exc:
        client = exc
    thread.join()
    listener.close()
    return got[0], client


def test_the_channel_admits_a_peer_with_the_key_and_carries_json_objects_only():
    key = os.urandom(32)
    home = tempfile.mkdtemp()
    listener = channel.listen(str(Path(home) / "s"))
    accepted: list = []
    thread = threading.Thread(target=lambda: accepted.append(channel.accept(listener, key, 5)))
    thread.start()
    client = channel.connect(channel.describe(listener), key)
    thread.join()
    server = accepted[0]
    channel.send_json(client, {"fork": 1, "boot": {"worker": "w1"}})
    assert channel.recv_json(server) == {"fork": 1, "boot": {"worker": "w1"}}
    client.send_bytes(b"\x80\x04pickled")  # anything but JSON is refused
    with pytest.raises(ValueError):
        channel.recv_json(server)
    client.send_bytes(b"[1, 2]")  # JSON, but not an object
    with pytest.raises(ValueError, match="JSON object"):
        channel.recv_json(server)
    listener.close()


def test_a_peer_without_the_key_is_refused_by_either_end():
    served, client = _pair(b"k" * 32, b"x" * 32)
    assert isinstance(served, channel.AuthenticationError)
    assert isinstance(client, channel.AuthenticationError)


def test_the_handshake_never_sends_the_key():
    key = os.urandom(32)
    sent: list[bytes] = []
    a, b = __import__("multiprocessing").Pipe()
    original = b.send_bytes
    b.send_bytes = lambda data: (sent.append(bytes(data)), original(data))[1]
    thread = threading.Thread(target=channel.serve_handshake, args=(a, key, 5))
    thread.start()
    channel.client_handshake(b, key)
    thread.join()
    assert sent and all(key not in message for message in sent)


def test_tcp_addresses_parse_and_unix_paths_stay_paths():
    assert channel.parse("tcp://198.19.0.254:4100") == (("198.19.0.254", 4100), "AF_INET")
    assert channel.parse("/tmp/x/controller.sock") == ("/tmp/x/controller.sock", "AF_UNIX")


def test_run_keys_differ_per_run_and_per_secret():
    assert run_key(b"s", "n1") == run_key(b"s", "n1")
    assert len({run_key(b"s", "n1"), run_key(b"s", "n2"), run_key(b"t", "n1")}) == 3


RAW = [
    {"NodeID": "head", "NodeManagerAddress": "10.0.0.1", "Alive": True, "Resources": {}},
    {
        "NodeID": "n1",
        "NodeManagerAddress": "10.0.0.11",
        "Alive": True,
        "Resources": {"CPU": 1.0, "mwsim-host-h1": 1.0},
    },
    {
        "NodeID": "n2",
        "NodeManagerAddress": "10.0.0.12",
        "Alive": True,
        "Resources": {"CPU": 8.0, "GPU": 2.0},
    },
    {"NodeID": "n3", "NodeManagerAddress": "10.0.0.13", "Alive": True, "Resources": {"CPU": 4.0}},
    {
        "NodeID": "dead",
        "NodeManagerAddress": "10.0.0.14",
        "Alive": False,
        "Resources": {"CPU": 4.0, "mwsim-host-h0": 1.0},
    },
]


def test_a_claimed_host_goes_to_its_node_and_the_others_to_remaining_nodes_with_their_gpus():
    nodes = nodes_of(RAW)
    assert next(n for n in nodes if n.id == "n1").claims == frozenset({"h1"})
    placed = place(["h0", "h1", "h2"], {"h2": 2}, nodes)
    assert placed["h1"].id == "n1"  # claimed
    assert placed["h2"].id == "n2"  # the only node with 2 GPUs
    assert placed["h0"].id == "n3"  # the dead node's claim does not count; no CPU: not the head


def test_too_few_nodes_or_gpus_is_inconclusive_naming_what_is_missing():
    nodes = nodes_of(RAW)
    with pytest.raises(Inconclusive, match=r"h3: no node left with a CPU"):
        place(["h0", "h1", "h2", "h3"], {}, nodes)
    with pytest.raises(Inconclusive, match=r"needs 4 GPU\(s\)"):
        place(["h1"], {"h1": 4}, nodes)
    twice = [*nodes, Node("n9", "10.0.0.19", 1, 0, frozenset({"h1"}))]
    with pytest.raises(Inconclusive, match="h1 is claimed by 2 nodes"):
        place(["h1"], {}, twice)


def test_the_cluster_address_and_secret_come_from_the_option_or_the_environment(monkeypatch):
    monkeypatch.setattr(raynodes, "read_state", lambda: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MWSIM_CLUSTER_SECRET", raising=False)
    with pytest.raises(Inconclusive, match="RAY_ADDRESS"):
        resolve("ray")
    with pytest.raises(Inconclusive, match="no local cluster"):
        resolve("auto")
    with pytest.raises(Inconclusive, match="MWSIM_CLUSTER_SECRET"):
        resolve("ray://10.0.0.1:10001")
    monkeypatch.setenv("MWSIM_CLUSTER_SECRET", "s3")
    monkeypatch.setenv("RAY_ADDRESS", "ray://10.0.0.1:10001")
    assert resolve("ray") == ("ray://10.0.0.1:10001", b"s3")
    with pytest.raises(ValueError, match="must be ray"):
        resolve("yarn")


def test_what_a_cluster_left_makes_a_run_unclean():
    assert not Leftovers((), (), cluster=("host actor of h1 still answers",)).clean
    unchecked = Leftovers((), (), unchecked=("h2 (gone)",))
    assert not unchecked.clean and "could not be checked: h2" in unchecked.describe()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mwsim.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_a_malformed_cluster_option_is_a_usage_error_and_fuzz_needs_real():
    bad = _cli("run", "scenarios/fanin-crash-one.yaml", "--real", "--cluster", "yarn://x")
    assert bad.returncode == 2 and "ray://HOST:PORT" in bad.stderr
    fuzz = _cli("fuzz", "--budget", "1", "--cluster", "auto")
    assert fuzz.returncode == 2 and "--real" in fuzz.stderr


def test_ray_is_not_imported_without_a_cluster():
    probe = "import sys, mwsim.cli, mwsim.replay.controller; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_fuzzing_on_a_cluster_never_proposes_power_off_and_network_kinds_only_locally(
    monkeypatch,
):
    from mwsim.events import Kind
    from mwsim.fuzz import FUZZ_KINDS, real_kinds

    monkeypatch.setattr("mwsim.fuzz.options.emulated.unavailable", lambda: None)
    network = {k for k in FUZZ_KINDS if k.info.network}
    assert Kind.POWER_OFF in FUZZ_KINDS and network
    local = set(real_kinds(cluster="auto"))
    assert Kind.POWER_OFF not in local and network - {Kind.POWER_OFF} <= local
    assert not set(real_kinds(cluster="ray://10.0.0.1:10001")) & network
    assert set(real_kinds()) == set(FUZZ_KINDS)
