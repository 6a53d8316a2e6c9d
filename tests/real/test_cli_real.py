"""The command line on real processes: the demo, re-judging, interruption, negative control."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mwsim.hosts import emulated

ROOT = Path(__file__).parents[2]
MWSIM = [sys.executable, "-m", "mwsim.cli"]

LONG = """\
mwsim: 1
name: long
topology: {generator: fan_in, workers: 3}
duration_s: 60
events: [{at: 30.0, do: crash, target: w1}]
"""


def wait_for(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def namespaces_of(pid: int) -> list[str]:
    """The network namespaces of the run controlled by ``pid``."""
    return [ns for ns in emulated.ours() if ns.startswith(f"{emulated.PREFIX}{pid}-")]


def run_processes(proc: subprocess.Popen) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """The run's fork server(s) and the agents forked from it."""
    try:
        children = psutil.Process(proc.pid).children()
        zygotes = [c for c in children if "mwsim.replay.zygote" in " ".join(c.cmdline())]
        agents = [a for z in zygotes for a in z.children()]
    except psutil.NoSuchProcess:
        return [], []
    return zygotes, agents


def gone(pids):
    def check():
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                pass
        return True

    return check


def start_long(tmp_path: Path, quiet: bool = False) -> subprocess.Popen:
    """``mwsim run`` of the LONG scenario for real, its output piped (``quiet``: dropped);
    faulthandler on, so a hang can be shown by SIGABRT."""
    path = tmp_path / "long.yaml"
    path.write_text(LONG)
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [*MWSIM, "run", str(path), "--real", "--out", str(tmp_path / "out")],
        stdout=out,
        stderr=subprocess.DEVNULL if quiet else subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )


def test_demo_run_in_both_modes_passes_and_check_agrees(tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.json"
    scenario = ROOT / "scenarios" / "fanin-crash-one.yaml"
    run = subprocess.run(
        [*MWSIM, "run", str(scenario), "--out", str(out), "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(report.read_text())
    assert data["mode"] == "both" and data["verdict"] == "pass"
    assert {p["name"]: p["verdict"] for p in data["properties"]}["conformance"] == "pass"
    assert data["broken_worlds"] == ["world2"]
    assert [r["mode"] for r in data["runs"]] == ["sim", "real"]
    assert Path(data["artifacts"]["timeline"]).stat().st_size > 10_000
    real = next(r for r in data["runs"] if r["mode"] == "real")
    again = tmp_path / "again.json"
    check = subprocess.run(
        [*MWSIM, "check", real["history"], "--scenario", str(scenario), "--json", str(again)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(again.read_text())["properties"] == real["properties"]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_stops_the_run_and_leaves_nothing(tmp_path, signum, status):
    proc = start_long(tmp_path)
    try:
        wait_for(lambda: len(run_processes(proc)[1]) == 4, 120, "four agents")
        zygotes, agents = run_processes(proc)
        pids = [p.pid for p in zygotes + agents]
        history = tmp_path / "out" / "long" / "real" / "history.jsonl"
        wait_for(lambda: history.exists() and '"op"' in history.read_text(), 120, "the workload")
        proc.send_signal(signum)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # show where it hangs: faulthandler dumps on SIGABRT
            proc.send_signal(signal.SIGABRT)
            output, _ = proc.communicate(timeout=10)
            raise AssertionError(f"no exit 60 s after {signum!r}; stacks:\n{output}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, output
    assert "interrupted" in output
    assert not namespaces_of(proc.pid)  # its hosts went with it
    wait_for(gone(pids), 10, "agents to be gone")
    lines = history.read_text().splitlines()
    assert '"interrupted"' in lines[-2] and '"hygiene"' in lines[-1] and '"ok": true' in lines[-1]


BRINGUP_MOMENTS = {
    "fork server importing": lambda zygotes, agents: bool(zygotes) and not agents,
    "agents forked": lambda zygotes, agents: bool(agents),
}


@pytest.mark.parametrize("moment", BRINGUP_MOMENTS)
def test_an_interrupt_during_bring_up_stops_it_at_once_and_leaves_nothing(tmp_path, moment):
    """At the start of a run (the fork server still importing torch, agents being forked
    that may not yet lead their own process group) the promise is the same as later: 143,
    the console and the history agree that nothing was left."""
    proc = start_long(tmp_path)
    pids: list[int] = []

    def reached() -> bool:
        zygotes, agents = run_processes(proc)
        pids.extend(p.pid for p in zygotes + agents if p.pid not in pids)
        return BRINGUP_MOMENTS[moment](zygotes, agents) or proc.poll() is not None

    try:
        wait_for(reached, 120, moment)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, output
    assert "interrupted; its processes were stopped" in output
    wait_for(gone(pids), 10, "the run's processes to be gone")
    history = tmp_path / "out" / "long" / "real" / "history.jsonl"
    if history.exists():  # the controller had begun: its record agrees with the console
        last = json.loads(history.read_text().splitlines()[-1])
        assert last["kind"] == "hygiene" and last["ok"] is True, last


def test_agents_die_with_a_killed_controller(tmp_path):
    proc = start_long(tmp_path, quiet=True)
    try:
        wait_for(lambda: len(run_processes(proc)[1]) == 4, 120, "four agents")
        zygotes, agents = run_processes(proc)
        pids = [p.pid for p in zygotes + agents]
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_for(gone(pids), 15, "agents to follow their controller")


def test_negative_control_is_confirmed_for_real(tmp_path):
    report = tmp_path / "r.json"
    run = subprocess.run(
        [
            *MWSIM,
            "run",
            str(ROOT / "scenarios" / "fanin-leader-hang.yaml"),
            "--out",
            str(tmp_path / "out"),
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(report.read_text())
    verdicts = {p["name"]: p for p in data["properties"]}
    assert verdicts["detection"]["verdict"] == "fail" and verdicts["detection"]["expected"]
    # the violations are named as the upstream finding they are, in the report and the table
    assert [f["finding"] for f in data["known_findings"]] == [2]
    assert "runs into known upstream finding 2: a hung rank 0" in " ".join(run.stdout.split())
    assert verdicts["conformance"]["verdict"] == "fail" and verdicts["conformance"]["expected"]
    assert all(
        v["verdict"] == "pass" for k, v in verdicts.items() if k not in ("detection", "conformance")
    )


DEGRADED = """\
mwsim: 1
name: degraded
topology: {generator: fan_in, workers: 2, hosts: 2}
duration_s: 60
events: [{at: 0.5, do: degrade, target: h1, delay_ms: 20}]
"""


@pytest.mark.skipif(emulated.unavailable() is not None, reason=str(emulated.unavailable()))
def test_a_killed_controllers_hosts_are_recognised_and_cleaned(tmp_path):
    """SIGKILL leaves no chance to tear down: agents and the delay daemon die with their
    controller, the namespaces stay until ``mwsim clean`` (or the next run) finds them
    by name and removes them."""
    path = tmp_path / "degraded.yaml"
    path.write_text(DEGRADED)
    proc = subprocess.Popen(
        [*MWSIM, "run", str(path), "--real", "--out", str(tmp_path / "out")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    history = tmp_path / "out" / "degraded" / "real" / "history.jsonl"
    try:
        wait_for(lambda: history.exists() and '"degrade"' in history.read_text(), 120, "the fault")
        spawned = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert any("hosts/delayd.py" in " ".join(psutil.Process(p).cmdline()) for p in spawned)
        namespaces = namespaces_of(proc.pid)
        assert len(namespaces) == 3  # two hosts and the switch
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_for(gone(spawned), 15, "agents and the delay daemon to follow their controller")
    assert namespaces_of(proc.pid) == namespaces  # nobody was left to remove them
    cleaned = subprocess.run([*MWSIM, "clean"], capture_output=True, text=True, timeout=60)
    assert cleaned.returncode == 0, cleaned.stderr
    assert all(f"removed {ns}" in cleaned.stdout for ns in namespaces)
    assert not namespaces_of(proc.pid)


def test_a_pytest_session_with_real_items_leaves_no_temporary_folder(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    scenario = ROOT / "scenarios" / "fanin-crash-one.yaml"
    command = [sys.executable, "-m", "pytest", str(scenario), "--mwsim-mode=real", "-q"]
    command += ["-p", "no:cacheprovider", f"--mwsim-out={tmp_path / 'out'}"]
    env = {**os.environ, "TMPDIR": str(temp)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert not [p.name for p in temp.iterdir() if p.name.startswith("mwsim-")]
