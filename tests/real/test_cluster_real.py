"""Replays on a real three-node Ray cluster on this machine (``mwsim cluster start``): each
topology host on its own node, agents forked there by the node's host actor."""

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mwsim import load_scenario, read_history
from mwsim.checks import Result, facts
from mwsim.errors import Inconclusive
from mwsim.history import Mode
from mwsim.hosts import cluster
from mwsim.replay import raynodes
from mwsim.replay.controller import Controller
from mwsim.runs import run_scenario
from mwsim.testing import cluster_processes, namespace_sockets, scenario

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
TOUR = LIBRARY / "cluster-tour.yaml"
ATTEMPTS, STALL_S = 3, 0.5  # the replay fixture's policy (conftest.py) for a lagging harness
ALLOWED = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "198.18.0.0/15", "0.0.0.0/32")]


def _allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip  # gRPC's dual-stack sockets name IPv4 peers this way
    return ip.is_loopback or any(ip in net for net in ALLOWED)


def _claims(state):
    ray = raynodes.connect(state["address"])
    return {host: node.id for node in raynodes.nodes_of(ray.nodes()) for host in node.claims}


def test_the_tour_runs_each_host_on_its_node_with_the_verdicts_of_a_local_run(
    ray_cluster, tmp_path, zygote
):
    tour = load_scenario(TOUR)
    for attempt in range(ATTEMPTS):  # as the replay fixture: again where the harness lagged
        where = tmp_path / str(attempt)
        on_ray = run_scenario(tour, mode=Mode.REAL, out_dir=where / "ray", cluster="auto")
        here = run_scenario(tour, mode=Mode.REAL, out_dir=where / "here", zygote=zygote)
        verdicts = {v.name: v.verdict for v in on_ray.verdicts}
        same = verdicts == {v.name: v.verdict for v in here.verdicts}
        lagged = any(
            lag.hi - lag.lo >= STALL_S
            for run in (on_ray, here)
            for lag in facts(run.runs[0].history, tour).lags
        )
        if (same and on_ray.verdict == Result.PASS) or not lagged:
            break
        print(f"replayed again: the harness fell behind (attempt {attempt + 1})")
    assert same, (on_ray.verdicts, here.verdicts)
    assert on_ray.verdict == Result.PASS, [v for v in on_ray.verdicts if v.verdict != "pass"]

    history = on_ray.runs[0].history
    placement = history.meta["network"]["placement"]
    claims = _claims(ray_cluster)
    assert {h: p["node"] for h, p in placement.items()} == {h: claims[h] for h in placement}
    assert all(p["claimed"] for p in placement.values())
    assert len({p["node"] for p in placement.values()}) == 3  # one node per host

    agents = {a["worker"]: a for a in history.of_kind("agent")}
    assert set(agents) == {"leader", "a", "b", "c", "d", "e"}
    for agent in agents.values():  # what each agent's own environment said, on its node
        assert agent["node"] == placement[agent["host"]]["node"], agent
        assert agent["address"] in ray_cluster["node_addresses"]
    assert agents["e"]["host"] == "h2" != agents["leader"]["host"]  # a join onto another node

    faults = {(f["do"], f["target"]): f for f in history.of_kind("fault")}
    assert set(faults) == {("crash", "a"), ("hang", "c"), ("leave", "d"), ("crash_host", "h1")}
    assert all(f["confirmed"] for f in faults.values()), faults
    assert [r["confirmed"] for r in history.of_kind("resumed")] == [True]
    hygiene = history.of_kind("hygiene")[0]
    assert hygiene["ok"], hygiene["detail"]
    assert {h: c["checked"] for h, c in hygiene["checked"].items()} == dict.fromkeys(
        placement, True
    )
    assert cluster_processes() == [] and cluster_processes("HostActor") == []


def test_network_faults_act_on_the_nodes_links_and_are_gone_after_the_run(ray_cluster, tmp_path):
    cut = load_scenario(LIBRARY / "partition-members-cut-apart.yaml")
    outcome = run_scenario(cut, mode=Mode.REAL, out_dir=tmp_path, cluster="auto")
    assert outcome.verdict == Result.PASS, outcome.verdicts
    history = outcome.runs[0].history
    assert [f["confirmed"] for f in history.of_kind("fault")] == [True]
    for namespace in cluster.namespaces():  # no table of the fault left on the switch or nodes
        rules = subprocess.run(
            ["ip", "netns", "exec", namespace, "nft", "list", "tables"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "mwsim_" not in rules, (namespace, rules)


def test_a_topology_larger_than_the_cluster_is_inconclusive_before_anything_starts(ray_cluster):
    four = scenario(
        """
        topology: {generator: fan_in, workers: 4, hosts: 4}
        workload: {kind: stream}
        duration_s: 2
        """
    )
    with pytest.raises(Inconclusive, match="h3: no node left"):
        Controller(four, "unused", cluster="auto")
    assert cluster_processes("HostActor") == []


def test_power_off_is_inconclusive_on_a_cluster(ray_cluster):
    off = load_scenario(LIBRARY / "power-off-worker-host.yaml")
    with pytest.raises(Inconclusive, match="power_off"):
        Controller(off, "unused", cluster="auto")


def test_no_packet_of_the_cluster_or_its_driver_goes_beyond_loopback_and_the_test_range(
    ray_cluster,
):
    for namespace in cluster.namespaces():
        routes = subprocess.run(
            ["ip", "-n", namespace, "-o", "-4", "route", "show", "table", "all"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "default" not in routes, (namespace, routes)  # nowhere else to send a packet
        sockets = namespace_sockets(namespace)
        assert sockets or namespace == cluster.SWITCH, namespace  # Ray listens on each node
        wrong = [s for s in sockets if not (_allowed(s[0]) and _allowed(s[2]))]
        assert not wrong, (namespace, wrong)
    raynodes.connect(ray_cluster["address"])  # this process is a driver too
    import psutil

    remote = [c.raddr.ip for c in psutil.Process().net_connections("inet") if c.raddr]
    assert remote and all(_allowed(ip) for ip in remote), remote


def _tour_in_a_process(out: Path) -> tuple[subprocess.Popen, Path]:
    """``mwsim run`` of the tour on the cluster, once its first fault is recorded."""
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mwsim.cli",
            "run",
            str(TOUR),
            "--real",
            "--cluster",
            "auto",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )
    history = out / "cluster-tour" / "real" / "history.jsonl"
    deadline = time.monotonic() + 120
    try:
        while not (history.exists() and '"kind": "fault"' in history.read_text()):
            assert time.monotonic() < deadline, "the run never got to its first fault"
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.wait(timeout=0.05)  # the run ending early is a failure: said below
            assert run.returncode is None, run.stdout.read()
        assert len(cluster_processes()) >= 5  # fork servers and agents are up
        assert len(cluster_processes("HostActor")) == 3
    except BaseException:
        run.kill()
        raise
    return run, history


def test_an_interrupted_run_leaves_nothing_on_any_node(ray_cluster, tmp_path):
    run, history = _tour_in_a_process(tmp_path)
    try:
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, output
    assert "interrupted" in output
    recorded = read_history(history)
    hygiene = recorded.of_kind("hygiene")[0]
    assert hygiene["ok"], hygiene["detail"]
    assert set(hygiene["checked"]) == {"h0", "h1", "h2"}
    assert cluster_processes() == [] and cluster_processes("HostActor") == []
    for namespace in cluster.namespaces():
        ports = set(hygiene["ports"])
        listening = {s[1] for s in namespace_sockets(namespace) if s[4] == "0A"}
        assert not ports & listening, (namespace, ports & listening)


def test_a_controller_killed_outright_leaves_nothing_on_any_node(ray_cluster, tmp_path):
    run, _ = _tour_in_a_process(tmp_path)
    run.kill()  # SIGKILL: no teardown; each host actor sees its channel close
    run.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while cluster_processes() or cluster_processes("HostActor"):
        assert time.monotonic() < deadline, (cluster_processes(), cluster_processes("HostActor"))
        threading.Event().wait(0.1)  # polling the nodes' process tables until they are clean


def _core_library() -> list[str]:
    """The library scenarios the test command replays for real (the Makefile's CORE_REAL)."""
    makefile = (LIBRARY.parent / "Makefile").read_text()
    listed = re.search(r"^CORE_REAL := (.*?)\n\n", makefile, re.S | re.M)
    assert listed is not None
    return listed.group(1).replace("\\", " ").split()


def test_the_core_library_passes_on_the_cluster_as_pytest_items(ray_cluster, tmp_path):
    core = _core_library()
    assert len(core) >= 6
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *core,
            "--mwsim-mode=real",
            "--mwsim-cluster=auto",
            f"--mwsim-out={tmp_path}",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=LIBRARY.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert f"{len(core)} passed" in done.stdout, done.stdout[-2000:]
    histories = sorted(tmp_path.rglob("history.jsonl"))
    real = [read_history(h) for h in histories if h.parent.name == "real"]
    assert len(real) == len(core)
    assert all(h.meta["network"]["kind"] == "ray" for h in real)  # each ran on the cluster
