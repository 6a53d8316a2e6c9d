"""Bug-finding power: the real stateful fuzzer must find each planted bug (and the
single-process-group baseline's lack of isolation) on live processes, shrink it to at most
4 events, and write a scenario file that replays to the same violation while upstream
MultiWorld passes it; one session must report every distinct bug of a build, a rare one
behind one that shows in nearly every example; and a runtime whose deployment fails while
it comes up (it never serves, or kills its own process) is reported within a minute.

Each search is bounded by a budget of 300 s (a minute for those failing at bring-up) and
stops at the failures it looks for; the time-to-find is printed (``-s``) and recorded in
the JUnit XML as a property. The planted false alarm of ``mutant-false-alarm`` is the rare
bug of ``mutant-two-bugs``: found there.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mwsim.fuzz import fuzz as session
from mwsim.fuzz import signature
from mwsim.history import Mode
from mwsim.replay.zygote import Zygote, agent_env
from mwsim.runs import run_scenario
from mwsim.scenario import load_scenario

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("needs_multiworld", "no_leftovers")]

BUDGET_S = 300
#: The properties each planted bug can show up as (a message lost in a stream is a gap in
#: the data; a lost reply in a request world leaves rank 0 waiting: the world stalls).
EXPECTED = {
    "mutant-stop-all": {"progress", "no_false_alarm"},
    "mutant-no-watchdog": {"detection"},
    "mutant-drop-after-join": {"integrity", "progress"},
}


def fuzz(*args, **kwargs):
    """A fuzzing session; one stopped by Ctrl-C (it returns what it found) stops the tests."""
    result = session(*args, **kwargs)
    if result.interrupted is not None:
        raise KeyboardInterrupt
    return result


@pytest.fixture
def zygote(tmp_path):
    warm = Zygote("multiworld", tmp_path / "zygote.log", agent_env())
    yield warm
    warm.stop()


def replays_to(path, runtime: str, out, zygote) -> set[str]:
    """Replay a scenario file for real on ``runtime``; its violated properties."""
    s = load_scenario(path).model_copy(update={"runtime": runtime})
    outcome = run_scenario(s, mode=Mode.REAL, out_dir=out, zygote=zygote)
    return {v.name for v in outcome.verdicts if v.verdict == "fail"}


@pytest.mark.parametrize("runtime", sorted(EXPECTED))
def test_the_stateful_fuzzer_finds_and_shrinks_each_mutant(
    tmp_path, runtime, record_property, zygote
):
    result = fuzz(
        BUDGET_S,
        real=True,
        runtime=runtime,
        out=tmp_path,
        fuzzers=("stateful",),
        seed=0,
        stop_after=1,
    )
    assert result.violation is not None, "\n".join(result.log) or "nothing found"
    found = result.violation
    record_property("time_to_find_s", round(result.first_failure_s or 0, 1))
    record_property("events", len(found.scenario.events))
    print("\n".join(result.log))
    print(
        f"{runtime}: found after {result.first_failure_s:.0f} s, "
        f"shrunk to {len(found.scenario.events)} event(s) in {result.elapsed_s:.0f} s"
    )
    assert len(found.scenario.events) <= 4
    violated = {v.name for v in found.verdicts if v.verdict == "fail"}
    assert violated & EXPECTED[runtime], violated
    assert load_scenario(found.path).runtime == runtime
    assert replays_to(found.path, runtime, tmp_path / "again", zygote) & EXPECTED[runtime]


#: Runtimes whose deployment fails while it comes up, and the (property, kind of evidence)
#: that shows it: found and reported within a minute, a find like any other.
BRINGUP = {
    "mutant-never-serves": ("progress", "never served after forming"),
    "mutant-slow-join-kill": ("survival", "an untargeted worker was killed by signal 9"),
}
BRINGUP_BUDGET_S = 60


@pytest.mark.parametrize("runtime", sorted(BRINGUP))
def test_a_runtime_that_fails_while_it_comes_up_is_reported_within_a_minute(
    tmp_path, runtime, record_property, zygote
):
    result = fuzz(
        BRINGUP_BUDGET_S,
        real=True,
        runtime=runtime,
        out=tmp_path,
        fuzzers=("stateful",),
        seed=0,
        stop_after=1,
    )
    print("\n".join(result.log))
    assert result.violation is not None, "\n".join(result.log) or "nothing found"
    (failure,) = result.failures
    record_property("time_to_find_s", round(failure.found_after_s, 1))
    took = f"found after {failure.found_after_s:.0f} s, reported at {result.elapsed_s:.0f} s"
    print(f"{runtime}: {took}")
    # found, replayed, checked against the reference and written within the budget
    assert BRINGUP[runtime] in failure.signature and not failure.note
    assert not failure.violation.scenario.events  # it needs no event at all
    s = load_scenario(failure.path)
    outcome = run_scenario(s, mode=Mode.REAL, out_dir=tmp_path / "again", zygote=zygote)
    assert BRINGUP[runtime] in signature(outcome.verdicts)
    upstream = s.model_copy(update={"runtime": "multiworld"})
    passes = run_scenario(upstream, mode=Mode.REAL, out_dir=tmp_path / "up", zygote=zygote)
    assert passes.verdict == "pass", [(v.name, v.detail) for v in passes.verdicts]


#: The two planted bugs of mutant-two-bugs, as (property, kind of evidence).
DOMINANT = ("integrity", "wrong data")
RARE = ("no_false_alarm", "reported broken while healthy")


def test_one_session_reports_the_bug_in_every_example_and_the_rare_one_behind_it(
    tmp_path, record_property, zygote
):
    result = fuzz(
        BUDGET_S,
        real=True,
        runtime="mutant-two-bugs",
        out=tmp_path,
        fuzzers=("stateful",),
        seed=0,
        stop_after=2,
    )
    found = {pair: f for f in result.failures for pair in f.signature}
    print("\n".join(result.log))
    assert DOMINANT in found and RARE in found, [f.signature for f in result.failures]
    dominant, rare = found[DOMINANT], found[RARE]
    record_property("rare_found_after_s", round(rare.found_after_s, 1))
    print(
        f"dominant: {dominant.hits} of {result.examples} examples; rare: found after "
        f"{rare.found_after_s:.0f} s, hit by {rare.hits}"
    )
    assert dominant.hits > rare.hits and dominant.hits >= result.examples // 2
    assert not dominant.violation.scenario.events  # it needs no event at all
    assert 1 <= len(rare.violation.scenario.events) <= 4
    for failure, pair in ((dominant, DOMINANT), (rare, RARE)):
        s = load_scenario(failure.path)
        outcome = run_scenario(s, mode=Mode.REAL, out_dir=tmp_path / pair[0], zygote=zygote)
        assert pair in signature(outcome.verdicts), pair
    assert dominant.path != rare.path


#: The baseline's two weaknesses: one failure stops every world (no isolation), and
#: nothing watches for a silent peer (a hang, a power-off, a silent cut is never seen).
TORCH = {"progress", "no_false_alarm", "detection", "errors"}


def mwsim(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mwsim.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_mwsim_fuzz_catches_the_torch_baselines_weaknesses(tmp_path):
    """The paper's baseline (every worker in one process group): one failure stops every
    world, and nothing watches for a silent peer. ``mwsim fuzz --real`` must catch one of
    them, write it and exit 1; the two ``reproduce`` lines it prints must replay it on the
    baseline and show upstream MultiWorld passing it."""
    out = tmp_path / "fuzz"
    done = mwsim(
        "fuzz",
        "--budget",
        str(BUDGET_S),
        "--real",
        "--runtime",
        "torch",
        "--fuzzer",
        "stateful",
        "--seed",
        "0",
        "--stop-after",
        "1",
        "--out",
        str(out),
    )
    print(done.stdout)
    assert done.returncode == 1, done.stdout + done.stderr
    (written,) = re.findall(r"scenario: (\S+)", done.stdout)
    path = Path(written)
    assert path.parent == out and path.name.endswith("-torch-1.yaml")
    scenario = load_scenario(path)
    assert 1 <= len(scenario.events) <= 4
    report = json.loads(path.with_suffix(".json").read_text())
    assert {p["name"] for p in report["properties"] if p["verdict"] == "fail"} & TORCH
    ours, theirs = report["reproduce"]
    assert ours == f"mwsim run {path} --real --runtime torch"
    assert theirs.startswith(f"mwsim run {path} --real --runtime multiworld")
    assert f"reproduce: {ours}\n" in done.stdout  # on one line, to copy and paste
    for line, status in ((ours, 1), (theirs.split("  #")[0], 0)):
        args = [*shlex.split(line)[1:], "--out", str(tmp_path / str(status))]
        again = mwsim(*args)
        assert again.returncode == status, line + "\n" + again.stdout[-2000:]
