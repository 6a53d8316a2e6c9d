"""The NCCL tier: real replays with backend nccl, one GPU per rank (CI GPU runners).

Where the machine lacks the GPUs these tests are skipped with the reason, never passed.
"""

from __future__ import annotations

import pytest

from mwsim.runs import run_scenario
from mwsim.runtimes import cuda_devices
from mwsim.testing import broken_reports, ops_by_world
from mwsim.testing import scenario as inline

pytestmark = [pytest.mark.gpu, pytest.mark.real]


@pytest.fixture
def two_gpus() -> None:
    found = cuda_devices()
    if found < 2:
        pytest.skip(f"nccl needs 2 CUDA GPUs (one per rank of a world); this machine has {found}")


CRASH = """
    topology:
      generator: explicit
      hosts: {h0: {gpus: 2}}
      workers: {leader: {host: h0, gpu: 0}, a: {host: h0, gpu: 1}, b: {host: h0, gpu: 1}}
      worlds: {wa: [leader, a], wb: [leader, b]}
    backend: nccl
    workload: {kind: stream, tensor_bytes: 1048576, interval_ms: 10}
    duration_s: 8
    events:
      - {at: 2.0, do: crash, target: b}
"""


def test_a_crash_breaks_only_its_world_on_nccl(tmp_path, two_gpus):
    outcome = run_scenario(inline(CRASH, name="nccl-crash"), mode="real", out_dir=tmp_path)
    run = outcome.runs[0]
    assert run.broken_worlds == ["wb"], run.broken_worlds
    ops = ops_by_world(run.history)
    assert max(e.t for e in ops["wa"]) > 7.0  # the healthy world kept serving
    assert "leader" in broken_reports(run.history)["wb"]
    assert outcome.verdict == "pass", [(v.name, v.detail) for v in outcome.verdicts]
