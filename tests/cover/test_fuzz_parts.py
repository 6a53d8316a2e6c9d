"""The fuzzers' decisions that need no processes: which live proposals are races, what a
violation that does not replay becomes, and how a budget and a signal end a session."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import Phase, given, settings
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from mwsim import fuzz
from mwsim.checks import FAIL, Verdict
from mwsim.errors import BringUpFailed, Interrupted
from mwsim.events import Kind
from mwsim.fuzz import live, session, shrinking
from mwsim.replay.signals import SignalTrap, Waker
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

    def replay_violates(candidate, wanted, out, zygote=None, reference=None, cluster=None):
        replays.append((candidate, wanted))
        return None  # the replay passes: what the live run saw does not come back

    monkeypatch.setattr(shrinking, "replay_violates", replay_violates)
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


def test_a_live_failure_before_any_draw_where_an_earlier_example_drew_on_is_returned():
    """A deployment that does not come up (an abort in upstream's bring-up, rare) in the
    second example: Hypothesis calls it an inconsistent strategy; it is a live failure
    seen once (as it was in a run of the live fuzz tests here)."""
    calls = itertools.count()

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            if next(calls) == 1:
                raise AssertionError("leader was killed by signal 6 at bring-up")

        @rule(x=st.integers())
        def step(self, x: int) -> None:
            pass

    quick = settings(max_examples=3, database=None, phases=[Phase.generate])
    seen = reproducible_only(lambda: run_state_machine_as_test(Machine, settings=quick))
    assert seen == ["leader was killed by signal 6 at bring-up"]


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

    monkeypatch.setattr(live, "Controller", NoBringUp)
    monkeypatch.setattr(session, "Zygote", NoZygote)
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
    assert session._bringup_failure(grouped) is failed
    assert session._bringup_failure(caused) is failed
    assert session._bringup_failure(ValueError("x")) is None


# -- the budget bounds a session ---------------------------------------------------------

BIG = scenario(
    "topology: {generator: fan_in, workers: 3}\nduration_s: 9\nevents:\n"
    "  - {at: 1.0, do: crash, target: w1}\n  - {at: 2.0, do: hang, target: w2, for_s: 1}\n"
)


def test_a_replay_is_started_only_if_the_budget_can_pay_for_it():
    assert fuzz.Budget().fits(BIG) and not fuzz.Budget().spent()
    almost = fuzz.Budget.of(BIG.duration_s + fuzz.REPLAY_OVERHEAD_S - 1)
    assert not almost.fits(BIG) and not almost.spent()
    assert fuzz.Budget.of(-1).spent()
    with pytest.raises(fuzz.OutOfBudget):
        fuzz.Budget.of(-1).check()


def test_a_find_the_budget_cannot_replay_is_kept_unconfirmed_and_says_so(tmp_path, monkeypatch):
    replays = []
    monkeypatch.setattr(shrinking, "replay_violates", lambda *a, **k: replays.append(a) or None)
    violation = fuzz.Violation(BIG, [STALL], tmp_path / "found.yaml")
    kept = fuzz.minimize(violation, tmp_path, budget=fuzz.Budget.of(5))
    assert kept is not None and kept.note == fuzz.UNCONFIRMED and not replays
    assert kept.scenario is BIG  # as it was found


def test_shrinking_stops_where_the_budget_does_and_says_so(tmp_path, monkeypatch):
    clock = itertools.count(start=0.0, step=10.0)  # each replay takes 10 s
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))

    def replay_violates(candidate, wanted, out, zygote=None, reference=None, cluster=None):
        return [STALL]  # every candidate still fails: it could shrink to nothing

    monkeypatch.setattr(shrinking, "replay_violates", replay_violates)
    violation = fuzz.Violation(BIG, [STALL], tmp_path / "found.yaml")
    budget = fuzz.Budget(deadline=20.0)  # the first replay (12 s) and one more fit
    shrunk = fuzz.minimize(violation, tmp_path, budget=budget)
    assert shrunk is not None and shrunk.note == fuzz.UNSHRUNK
    assert 0 < len(shrunk.scenario.events) < len(BIG.events)  # one step, then out of budget


STALL = Verdict("progress", FAIL, "world1: no op", world="world1", evidence=("no op",))


class Raises:
    """A fuzzer whose every batch calls ``fail`` (which raises)."""

    name, real = "model", False

    def __init__(self, fail):
        self.fail = fail

    def run(self, batch, options):
        self.fail(batch, options)


def test_a_session_stopped_by_a_signal_returns_and_keeps_its_summary(tmp_path, monkeypatch):
    def interrupted(*_args, **_kwargs):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setitem(session.FUZZERS, "model", Raises(interrupted))
    result = fuzz.fuzz(60, out=tmp_path, seed=0)
    assert result.interrupted == signal.SIGTERM and result.batches == 1
    kept = json.loads(result.summary.read_text())
    assert kept["interrupted"] == "SIGTERM" and kept["budget_s"] == 60
    assert kept["log"] == ["stopped by SIGTERM"]


def test_a_spent_budget_ends_the_batch_under_way(tmp_path, monkeypatch):
    def slow_batch(*args, **_kwargs):
        raise fuzz.OutOfBudget

    monkeypatch.setitem(session.FUZZERS, "model", Raises(slow_batch))
    result = fuzz.fuzz(60, out=tmp_path, seed=0)
    assert result.batches == 1 and result.interrupted is None and not result.failures
    assert result.summary is not None and result.summary.exists()


def test_a_signal_that_came_during_a_teardown_is_passed_on_when_the_trap_is_released():
    heard = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: heard.append(signum))
    try:
        trap = SignalTrap(Waker())
        trap.trap()
        trap.holding = True  # a teardown is under way: the signal must wait for it
        os.kill(os.getpid(), signal.SIGTERM)
        trap.check()  # does not raise while holding
        assert heard == []
        trap.release()
        assert heard == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_raised_at_the_wait_is_not_passed_on_again():
    heard = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: heard.append(signum))
    try:
        trap = SignalTrap(Waker())
        trap.trap()
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted):
            trap.check()
        trap.release()
        assert heard == []
    finally:
        signal.signal(signal.SIGTERM, previous)
