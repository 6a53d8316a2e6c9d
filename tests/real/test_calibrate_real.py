"""Calibration on real processes (two micro-scenarios, once each)."""

from mwsim.calibrate import calibrate


def test_calibrate_fits_from_real_runs():
    logged = []
    model, rows = calibrate(repeat=1, log=logged.append, only=("crash", "add_world"))
    table = {row[0]: row for row in rows}
    assert table["kill_s"][3].startswith("1:") and table["init_s"][3].startswith("1:")
    assert 0.0 < model.kill_s < 1.0 and 0.0 < model.init_s < 1.0
    assert 0.0 <= model.fail_s < 0.5
    assert model.source.startswith("mwsim calibrate")
    assert logged == ["calibrating: crash (1/1)", "calibrating: add_world (1/1)"]
