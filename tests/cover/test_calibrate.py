"""Calibration's fitting, on simulated histories whose true parameters are known."""

import pytest

from mwsim.calibrate import MICRO, _samples
from mwsim.events import Kind
from mwsim.sim import RuntimeModel, simulate
from mwsim.testing import scenario

TRUE = RuntimeModel(fail_s=0.011, kill_s=0.022, leave_s=0.033, init_s=0.044, spawn_s=1.55)


@pytest.mark.parametrize(
    ("micro", "key", "value"),
    [
        (Kind.CRASH, "kill_s", TRUE.kill_s),
        (Kind.LEAVE, "leave_s", TRUE.leave_s),
        (Kind.ADD_WORLD, "init_s", TRUE.init_s),
        (Kind.JOIN, "spawn_s", TRUE.spawn_s),
    ],
)
def test_fit_recovers_the_parameter_a_history_was_made_with(micro, key, value):
    history = simulate(scenario(MICRO[micro], name=micro), model=TRUE)
    assert _samples(history, micro, TRUE)[key] == pytest.approx(value, abs=1e-3)


def test_crash_fit_gives_the_failure_latency():
    history = simulate(scenario(MICRO[Kind.CRASH], name="crash"), model=TRUE)
    assert _samples(history, Kind.CRASH, TRUE)["fail_s"] == pytest.approx(TRUE.fail_s, abs=1e-3)


def test_hang_sample_lies_in_the_watchdog_window():
    history = simulate(scenario(MICRO[Kind.HANG], name="hang"), model=TRUE)
    lo, hi = TRUE.watchdog_window()
    assert lo <= _samples(history, Kind.HANG, TRUE)[Kind.HANG] <= hi


@pytest.mark.parametrize("name", [Kind.PARTITION, Kind.POWER_OFF])
def test_silent_network_faults_sample_the_watchdog_window(name):
    history = simulate(scenario(MICRO[name], name=name), model=TRUE)
    lo, hi = TRUE.watchdog_window()
    assert lo <= _samples(history, name, TRUE)[name] <= hi


def test_the_recovery_sample_is_the_models_back_off():
    history = simulate(scenario(MICRO["heal"], name="heal"), model=TRUE)
    assert _samples(history, "heal", TRUE)["heal"] == pytest.approx(
        TRUE.resume_after(1.0) + TRUE.op_latency_s, abs=0.03
    )
