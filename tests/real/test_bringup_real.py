"""A deployment that does not come up, on real processes: a runtime whose worlds form and
never serve fails ``progress``, one that kills its own process while a join is slow fails
``survival`` (each confirmed by the reference runtime bringing up the same deployment),
and the harness losing its fork server during bring-up is inconclusive, naming it; a
fuzzing session ends within its budget plus the stated grace, and one stopped by SIGTERM
prints and keeps its summary so far."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from mwsim import read_history
from mwsim.checks import Result
from mwsim.cli import main
from mwsim.fuzz import GRACE_S
from mwsim.history import Mode
from mwsim.replay import placement, zygote
from mwsim.replay.zygote import Zygote
from mwsim.runs import recheck, run_scenario
from mwsim.testing import scenario

FAN_IN = """
name: comes-up
topology: {generator: fan_in, workers: 3}
duration_s: 4
events: [{at: 1.0, do: crash, target: w2}]
"""
MWSIM = [sys.executable, "-m", "mwsim.cli"]


def real(runtime, out, zygote):
    s = scenario(FAN_IN).model_copy(update={"runtime": runtime})
    outcome = run_scenario(s, mode=Mode.REAL, out_dir=out, zygote=zygote)
    (run,) = outcome.runs
    return outcome, {v.name: v for v in outcome.verdicts}, read_history(run.history_path)


def test_worlds_that_form_and_never_serve_fail_progress(tmp_path, zygote):
    outcome, verdicts, history = real("mutant-never-serves", tmp_path, zygote)
    assert outcome.verdict == Result.FAIL and outcome.runs[0].status == "bringup_failed"
    progress = verdicts["progress"]
    assert progress.verdict == Result.FAIL
    assert progress.evidence == ("never served after forming",)
    assert set(progress.worlds) == {"world1", "world2", "world3"}
    (failed,) = history.of_kind("bringup")
    assert (failed["stage"], failed["cause"]) == ("serve", "unclear")
    (reference,) = history.of_kind("reference")
    assert reference["runtime"] == "multiworld" and reference["served"] is True
    assert not history.of_kind("fault")  # the crash at 1.0 s was never played
    assert verdicts["hygiene"].verdict == Result.PASS
    # the stored history is judged the same way again
    again = recheck(outcome.runs[0].history_path, outcome.scenario)
    assert [v.verdict for v in again.verdicts] == [v.verdict for v in outcome.verdicts]


def test_a_worker_its_runtime_kills_during_a_slow_join_fails_survival(tmp_path, zygote):
    outcome, verdicts, history = real("mutant-slow-join-kill", tmp_path, zygote)
    assert outcome.verdict == Result.FAIL
    survival = verdicts["survival"]
    assert survival.verdict == Result.FAIL
    assert survival.detail.startswith("leader was killed by signal 9 at -")
    assert survival.evidence == ("an untargeted worker was killed by signal 9",)
    (failed,) = history.of_kind("bringup")
    assert (failed["stage"], failed["cause"]) == ("form", "unclear")
    assert history.of_kind("reference")[0]["served"] is True
    assert verdicts["progress"].verdict == Result.PASS  # its peers were cut short, not stuck


def test_mwsim_run_exits_1_when_the_runtime_fails_its_bring_up(tmp_path):
    path, out = tmp_path / "s.yaml", tmp_path / "report.json"
    path.write_text("mwsim: 1\n" + FAN_IN)
    args = ["run", str(path), "--real", "--runtime", "mutant-slow-join-kill"]
    done = CliRunner().invoke(main, [*args, "--out", str(tmp_path), "--json", str(out)])
    assert done.exit_code == 1, done.output
    report = json.loads(out.read_text())
    assert [p["name"] for p in report["properties"] if p["verdict"] == "fail"] == ["survival"]
    (run,) = report["runs"]
    assert run["status"] == "bringup_failed" and run["bringup"]["cause"] == "runtime"
    assert "bring-up failed (form stage, the runtime's doing)" in " ".join(done.output.split())


class DyingZygote(Zygote):
    """A fork server that is killed (SIGKILL) right after it forks its first agent."""

    def fork(self, boot, log, timeout_s=30.0):
        pid = super().fork(boot, log, timeout_s)
        os.kill(self.pid, signal.SIGKILL)
        return pid


def test_the_fork_server_killed_during_bring_up_is_inconclusive_naming_the_harness(tmp_path):
    dying = DyingZygote("multiworld", tmp_path / "zygote.log", zygote.agent_env())
    try:
        outcome = run_scenario(scenario(FAN_IN), mode=Mode.REAL, out_dir=tmp_path, zygote=dying)
    finally:
        dying.stop()
    assert outcome.verdict == Result.UNKNOWN
    assert {v.verdict for v in outcome.verdicts} == {Result.UNKNOWN}
    assert all("the harness's doing" in v.detail for v in outcome.verdicts)
    assert "fork server" in outcome.verdicts[0].detail
    history = read_history(outcome.runs[0].history_path)
    (failed,) = history.of_kind("bringup")
    assert failed["cause"] == "harness" and not history.of_kind("reference")
    (hygiene,) = history.of_kind("hygiene")
    assert hygiene["ok"] is True, hygiene["detail"]  # its orphaned agent is gone too


def test_mwsim_run_exits_3_when_the_harness_fails_at_bring_up(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("mwsim: 1\n" + FAN_IN)
    monkeypatch.setattr(placement, "Zygote", DyingZygote)
    done = CliRunner().invoke(main, ["run", str(path), "--real", "--out", str(tmp_path / "o")])
    assert done.exit_code == 3, done.output
    assert "bring-up failed (form stage, the harness's doing)" in " ".join(done.output.split())


def mwsim(*args, **options):
    return subprocess.Popen([*MWSIM, *args], stdout=subprocess.PIPE, text=True, **options)


def test_a_fuzzing_session_ends_within_its_budget_and_the_grace_with_its_summary(tmp_path):
    budget = 30
    began = time.monotonic()
    proc = mwsim(
        "fuzz",
        "--real",
        "--runtime",
        "mutant-two-bugs",
        "--budget",
        str(budget),
        "--seed",
        "0",
        "--out",
        str(tmp_path),
    )
    output, _ = proc.communicate(timeout=budget + 120)
    took = time.monotonic() - began
    print(output, f"took {took:.1f} s")
    assert proc.returncode == 1, output
    assert took <= budget + GRACE_S + 5  # + the interpreter's start and torch's import
    assert "distinct failure(s)" in output
    (summary,) = tmp_path.glob("*-summary.json")
    kept = json.loads(summary.read_text())
    assert kept["failures"] and kept["budget_s"] == budget and kept["interrupted"] is None
    assert f"summary: {summary}" in output


def test_a_fuzzing_session_stopped_by_sigterm_prints_and_keeps_its_summary(tmp_path):
    proc = mwsim(
        "fuzz",
        "--real",
        "--runtime",
        "mutant-slow-join-kill",
        "--budget",
        "300",
        "--seed",
        "0",
        "--out",
        str(tmp_path),
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*-mutant-slow-join-kill-1.json")):  # its first find, kept
        assert proc.poll() is None and time.monotonic() < deadline, "nothing found in time"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    print(output)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "1 distinct failure(s)" in output and "stopped early" in output
    (summary,) = tmp_path.glob("*-summary.json")
    kept = json.loads(summary.read_text())
    assert kept["interrupted"] == "SIGTERM"
    assert [f["properties"] for f in kept["failures"]] == [["survival"]]
    assert str(summary) in " ".join(output.split())
