"""The version matrix and the runtime's choice of path, without processes: targets parsed,
detections put in classes, cells compared, and which torch surface MultiWorld runs on."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest
from click.testing import CliRunner

from mwsim import matrix
from mwsim.cli import main
from mwsim.errors import ProblemError
from mwsim.runtimes import multiworld
from mwsim.runtimes.multiworld import LAYER, PATCH, MultiWorldRuntime


def test_a_target_is_a_runtime_optionally_in_another_environment_and_labelled():
    assert matrix.parse_target("torch") == matrix.Target("torch", "torch")
    python = sys.executable
    assert matrix.parse_target(f"multiworld@{python}") == matrix.Target(
        f"multiworld@{python}", "multiworld", python
    )
    assert matrix.parse_target(f"new=multiworld@{python}").label == "new"
    for bad in ("", "@x", "x@", "=torch", "multiworld@/no/such/python"):
        with pytest.raises(ProblemError, match="<target>:1: "):
            matrix.parse_target(bad)


def test_a_detection_is_classed_by_how_it_could_have_been_made():
    assert matrix.latency_class(0.02, 0.02) == "op"
    assert matrix.latency_class(0.7, 0.02) == "op"  # the store's window, or an op's
    assert matrix.latency_class(5.0, 0.02) == "watchdog"
    assert matrix.latency_class(40.0, 0.02) == "late"
    assert matrix.latency_class(None, 0.02) == "never"


REPORT = {
    "scenario": "s",
    "verdict": "pass",
    "properties": [
        {"name": "progress", "verdict": "pass"},
        {"name": "detection", "verdict": "fail", "expected": True},
    ],
    "broken_worlds": ["world2"],
    "detections": [{"world": "world2", "worker": "leader", "latency_s": 0.03}],
    "runs": [{"mode": "real", "runtime_package": {"path": LAYER}, "torch": "2.13.0"}],
}


def test_targets_agree_only_on_the_same_verdicts_broken_worlds_and_detection_classes():
    a = matrix.cell_of(REPORT, 0.02)
    assert a.verdict == "pass" and a.expected == ["detection"] and not a.failed
    assert a.detections == [("world2", "leader", "op")]
    slower = {**REPORT, "detections": [{"world": "world2", "worker": "leader", "latency_s": 0.5}]}
    assert not matrix.differences([a, matrix.cell_of(slower, 0.02)], ["x", "y"])  # same class
    late = {**REPORT, "detections": [{"world": "world2", "worker": "leader", "latency_s": 5.0}]}
    (what,) = matrix.differences([a, matrix.cell_of(late, 0.02)], ["x", "y"])
    assert what.startswith("detections: x [('world2', 'leader', 'op')], y")
    failing = {**REPORT, "verdict": "fail", "properties": [{"name": "progress", "verdict": "fail"}]}
    assert len(matrix.differences([a, matrix.cell_of(failing, 0.02)], ["x", "y"])) == 3


def test_matrix_refuses_a_bad_target_before_anything_starts(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("mwsim: 1\nname: s\ntopology: {generator: fan_in, workers: 2}\n")
    runner = CliRunner()
    done = runner.invoke(main, ["matrix", str(path), "--target", "x@/no/such/python"])
    assert done.exit_code == 2 and "<target>:1: " in done.output
    done = runner.invoke(main, ["matrix", str(path), "--target", "nosuch"])
    assert done.exit_code == 2 and "nosuch: choose one of" in done.output
    assert not (tmp_path / "out").exists()


def test_multiworld_runs_on_its_own_patch_where_it_has_one_and_on_the_layer_elsewhere(
    monkeypatch,
):
    assert MultiWorldRuntime.path() == PATCH  # this environment: torch 2.4.0, patched
    assert MultiWorldRuntime.describe()["path"] == PATCH
    real = importlib.metadata.version

    def torch_is(version):
        return lambda name: version if name == "torch" else real(name)

    monkeypatch.setattr(multiworld.importlib.metadata, "version", torch_is("2.13.0+cpu"))
    assert MultiWorldRuntime.path() == LAYER
    assert multiworld.layer_unavailable() is None
    assert "path=mwsim worlds layer" in MultiWorldRuntime.image()  # its own fork servers
    monkeypatch.setattr(multiworld.importlib.metadata, "version", torch_is("2.3.1"))
    assert "older than the 2.4 the worlds layer needs" in multiworld.layer_unavailable()


def test_the_layer_is_never_put_over_multiworlds_own_patch():
    from mwsim.runtimes import worlds_layer

    with pytest.raises(RuntimeError, match="already has worlds"):
        worlds_layer.install()
    assert not worlds_layer.installed()
