"""The fuzzers' decisions that need no processes: which live proposals are races, and
what a violation that does not replay becomes."""

from __future__ import annotations

import itertools
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from mwsim import fuzz
from mwsim.checks import FAIL, Verdict
from mwsim.errors import BringUpFailed
from mwsim.events import Kind
from mwsim.testing import reproducible_only, scenario
from mwsim.timing import model_for

LO, HI = model_for("multiworld").watchdog_window()


@pytest.mark.parametrize(
    ("kind", "fields", "race"),
    [
        (Kind.HANG, {"target": "w1", "for_s": (LO + HI) / 2}, True),
        (Kind.HANG, {"target": "w1", "for_s": LO - fuzz.RACE_MARGIN_S + 0.1}, True),
        (Kind.HANG, {"target": "w1", "for_s": HI + fuzz.RACE_MARGIN_S + 0.1}, False),
        (Kind.HANG, {"target": "w1", "for_s": 1.0}, False),
        (Kind.HANG, {"target": "w1", "for_s": None}, False),  # never resumed: decided
        (Kind.HANG, {"target": "w1"}, False),
        (Kind.PARTITION, {"groups": [["h0"], ["h1"]], "for_s": (LO + HI) / 2}, True),
        (Kind.PARTITION, {"groups": [["h0"], ["h1"]], "mode": "reset", "for_s": LO}, False),
        (Kind.SLOW, {"target": "w1", "delay_ms": 100.0, "for_s": LO}, False),  # not silent
    ],
)
def test_a_silent_fault_ending_inside_the_watchdog_window_is_a_race(kind, fields, race):
    assert fuzz.racy(kind, fields, "multiworld") is race


def test_a_violation_that_does_not_replay_is_not_shrunk_but_flaky(tmp_path, monkeypatch):
    found = scenario(
        "topology: {generator: fan_in, workers: 2}\nduration_s: 4\n"
        "events:\n  - {at: 1.0, do: crash, target: w1}\n"
    )
    verdict = Verdict("progress", FAIL, "world1: no op", world="world1", evidence=("no op",))
    violation = fuzz.Violation(found, [verdict], Path(tmp_path / "found.yaml"))
    replays = []

    def replay_violates(candidate, wanted, out, zygote=None):
        replays.append((candidate, wanted))
        return None  # the replay passes: what the live run saw does not come back

    monkeypatch.setattr(fuzz, "replay_violates", replay_violates)
    assert fuzz.minimize(violation, tmp_path) is None
    assert replays == [(found, {("progress", "no op")})]  # one replay, nothing dropped


def test_a_live_failure_that_does_not_come_back_is_returned_one_that_does_is_raised():
    runs = itertools.count()

    @settings(max_examples=1, database=None, derandomize=True)
    @given(st.just(0))
    def once(_):
        if next(runs) == 0:
            raise AssertionError("first time only")

    @settings(max_examples=1, database=None, derandomize=True)
    @given(st.just(0))
    def always(_):
        raise AssertionError("every time")

    assert reproducible_only(once) == ["first time only"]
    with pytest.raises(AssertionError, match="every time"):
        reproducible_only(always)


def test_a_live_deployment_that_does_not_come_up_is_skipped_three_times_then_raised(
    tmp_path, monkeypatch
):
    starts = []

    class NoBringUp:
        def __init__(self, scenario, out, **_):
            self.scenario = scenario

        def start(self):
            starts.append(self.scenario.name)
            raise BringUpFailed("agent leader exited during bring-up (code -6):\nterminate")

        def finish(self, *_):
            return None

    class NoZygote:
        def __init__(self, *_):
            pass

        def stop(self):
            return None

    monkeypatch.setattr(fuzz, "Controller", NoBringUp)
    monkeypatch.setattr(fuzz, "Zygote", NoZygote)
    batches = []
    with pytest.raises(BringUpFailed, match="exited during bring-up"):
        fuzz.fuzz(
            600,
            real=True,
            out=tmp_path,
            fuzzers=("stateful",),
            seed=0,
            on_batch=lambda result, _: batches.append(list(result.bringup_failures)),
        )
    assert len(batches) == fuzz.MAX_BRINGUP_FAILURES  # one try per batch (and its replay)
    assert batches[1] == ["terminate", "terminate"]
    assert len(starts) >= fuzz.MAX_BRINGUP_FAILURES


def test_a_bring_up_failure_is_found_inside_groups_and_causes():
    failed = BringUpFailed("no")
    grouped = ExceptionGroup("two", [ValueError("x"), failed])
    try:
        raise RuntimeError("wrapped") from failed
    except RuntimeError as exc:
        caused = exc
    assert fuzz._bringup_failure(grouped) is failed
    assert fuzz._bringup_failure(caused) is failed
    assert fuzz._bringup_failure(ValueError("x")) is None
