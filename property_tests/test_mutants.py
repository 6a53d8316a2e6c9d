"""Bug-finding power: the real stateful fuzzer must find each planted bug (and the
single-process-group baseline's lack of isolation) on live processes, shrink it to at most
4 events, and write a scenario file that ``mwsim run`` replays to the same violation while
upstream MultiWorld passes it.

Each search is bounded by a budget of 300 s; the time-to-find is printed (``-s``) and
recorded in the JUnit XML as a property.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mwsim.fuzz import fuzz
from mwsim.scenario import load_scenario

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("needs_multiworld", "no_leftovers")]

BUDGET_S = 300
#: The properties each planted bug can show up as (a message lost in a stream is a gap in
#: the data; a lost reply in a request world leaves rank 0 waiting: the world stalls).
EXPECTED = {
    "mutant-stop-all": {"progress", "no_false_alarm"},
    "mutant-no-watchdog": {"detection"},
    "mutant-drop-after-join": {"integrity", "progress"},
    "mutant-false-alarm": {"no_false_alarm"},
}


def mwsim(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mwsim.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def replays_to(path, runtime: str, out) -> set[str]:
    """Replay a scenario file for real through the command line; its violated properties."""
    report = out / f"{runtime}.json"
    done = mwsim(
        "run", str(path), "--real", "--runtime", runtime, "--out", str(out), "--json", str(report)
    )
    assert done.returncode in (0, 1), done.stderr
    data = json.loads(report.read_text())
    return {p["name"] for p in data["properties"] if p["verdict"] == "fail"}


@pytest.mark.parametrize("runtime", sorted(EXPECTED))
def test_the_stateful_fuzzer_finds_and_shrinks_each_mutant(tmp_path, runtime, record_property):
    result = fuzz(BUDGET_S, real=True, runtime=runtime, out=tmp_path, fuzzers=("stateful",), seed=0)
    assert result.violation is not None, "\n".join(result.log) or "nothing found"
    found = result.violation
    record_property("time_to_find_s", round(result.first_failure_s or 0, 1))
    record_property("events", len(found.scenario.events))
    print(
        f"{runtime}: found after {result.first_failure_s:.0f} s, "
        f"shrunk to {len(found.scenario.events)} event(s) in {result.elapsed_s:.0f} s"
    )
    assert len(found.scenario.events) <= 4
    violated = {v.name for v in found.verdicts if v.verdict == "fail"}
    assert violated & EXPECTED[runtime], violated
    assert load_scenario(found.path).runtime == runtime
    assert replays_to(found.path, runtime, tmp_path / "again") & EXPECTED[runtime]


#: The baseline's two weaknesses: one failure stops every world (no isolation), and
#: nothing watches for a silent peer (a hang, a power-off, a silent cut is never seen).
TORCH = {"progress", "no_false_alarm", "detection"}


def test_mwsim_fuzz_catches_the_torch_baselines_weaknesses(tmp_path):
    """The paper's baseline (every worker in one process group): one failure stops every
    world, and nothing watches for a silent peer. ``mwsim fuzz --real`` must catch one of
    them (upstream MultiWorld passing the same scenario), write it and exit 1."""
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
        "--out",
        str(out),
    )
    print(done.stdout)
    assert done.returncode == 1, done.stdout + done.stderr
    (path,) = out.glob("stateful-torch.yaml")
    scenario = load_scenario(path)
    assert 1 <= len(scenario.events) <= 4
    report = json.loads(path.with_suffix(".json").read_text())
    assert {p["name"] for p in report["properties"] if p["verdict"] == "fail"} & TORCH
    assert replays_to(path, "torch", tmp_path / "again") & TORCH
    assert not replays_to(path, "multiworld", tmp_path / "upstream")
