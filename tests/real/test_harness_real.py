"""The harness on itself, for real: when the workload's clock starts, and the machine's
CPU saturation recorded as the harness falling behind."""

import os
import signal
import subprocess
import sys

from mwsim.checks import check
from mwsim.testing import ops_by_world, scenario


def test_the_workloads_clock_starts_once_every_world_has_served_an_op(replay):
    s = scenario(
        """
        topology: {generator: fan_in, workers: 6}
        workload: {kind: request}
        duration_s: 2
        """
    )
    _, history = replay(s)
    ops = ops_by_world(history)
    assert set(ops) == {f"world{i}" for i in range(1, 7)}
    for world, series in ops.items():
        assert min(e.t for e in series) <= 0.0, world  # served before t = 0
    assert {v.name: v.verdict for v in check(history, s)}["progress"] == "pass"


def test_a_saturated_cpu_is_recorded_as_the_harness_falling_behind(replay):
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range((os.cpu_count() or 1) + 1)
    ]
    try:
        _, history = replay(
            scenario("topology: {generator: fan_in, workers: 2}\nduration_s: 3\n"), steady=False
        )
    finally:
        for burner in burners:
            os.killpg(burner.pid, signal.SIGKILL)
            burner.wait()
    cpu = [e for e in history.of_kind("lag") if e["source"] == "cpu"]
    assert cpu, [e.to_dict() for e in history.of_kind("lag")]
    assert all(e["share"] >= 0.5 and e["lag_s"] > 0 for e in cpu)
    assert any(0 <= e.t <= 3.5 for e in cpu)
