"""The NCCL tier: real replays with backend nccl on the GPUs of the machine (CI GPU
runners: `make test-gpu`, docs/gpu.md).

Each test says how many GPUs it needs (one per rank of a world on one host: NCCL refuses
two ranks of one communicator on one GPU) and is skipped with the reason where the machine
has fewer, never passed. With ``--mwsim-out DIR`` each run's history, report, timeline and
trace are kept under DIR (the GPU workflow uploads them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mwsim import report
from mwsim.runs import Outcome, run_scenario
from mwsim.runtimes import cuda_devices
from mwsim.testing import broken_reports, ops_by_world
from mwsim.testing import scenario as inline

pytestmark = [pytest.mark.gpu, pytest.mark.real]

_FOUND: list[int] = []


def gpus() -> int:
    """CUDA devices here (asked once, in a fresh process)."""
    if not _FOUND:
        _FOUND.append(cuda_devices())
    return _FOUND[0]


def needs(count: int) -> None:
    found = gpus()
    if found < count:
        pytest.skip(
            f"nccl needs {count} CUDA GPU(s) (one per rank of a world); this machine has {found}"
        )


@pytest.fixture
def run(request, tmp_path):
    """Replay an inline NCCL scenario for real; its Outcome (artifacts written). The
    scenario is parsed (and validated) before the GPUs are counted, so that a bad one
    fails on any machine."""
    chosen = request.config.getoption("--mwsim-out", default=None)

    def _run(text: str, name: str, gpus: int = 2) -> Outcome:
        scenario = inline(text, name=name)
        needs(gpus)
        out = Path(chosen) / "gpu_tests" / name if chosen else tmp_path / name
        outcome = run_scenario(scenario, mode="real", out_dir=out)
        report.write_artifacts(outcome)
        return outcome

    return _run


TWO_GPUS = """
    topology:
      generator: explicit
      hosts: {h0: {gpus: 2}}
      workers: {leader: {host: h0, gpu: 0}, a: {host: h0, gpu: 1}, b: {host: h0, gpu: 1}}
      worlds: {wa: [leader, a], wb: [leader, b]}
    backend: nccl
"""
STREAM = "    workload: {kind: stream, tensor_bytes: 1048576, interval_ms: 10}\n"


def passed(outcome: Outcome) -> None:
    assert outcome.verdict == "pass", [(v.name, v.verdict, v.detail) for v in outcome.verdicts]


def test_a_crash_breaks_only_its_world_on_nccl(run):
    outcome = run(
        TWO_GPUS + STREAM + "    duration_s: 8\n    events: [{at: 2.0, do: crash, target: b}]\n",
        "nccl-crash",
    )
    real = outcome.runs[0]
    assert real.broken_worlds == ["wb"], real.broken_worlds
    assert max(e.t for e in ops_by_world(real.history)["wa"]) > 7.0  # the other kept serving
    assert "leader" in broken_reports(real.history)["wb"]
    passed(outcome)


def test_a_hang_is_seen_by_the_watchdog_on_nccl(run):
    outcome = run(
        TWO_GPUS
        + STREAM
        + "    duration_s: 14\n    events: [{at: 2.0, do: hang, target: b, for_s: 9.0}]\n",
        "nccl-hang",
    )
    real = outcome.runs[0]
    assert "wb" in real.broken_worlds and "wa" not in real.broken_worlds
    passed(outcome)


def test_a_leave_ends_only_its_world_on_nccl(run):
    outcome = run(
        TWO_GPUS + STREAM + "    duration_s: 8\n    events: [{at: 2.0, do: leave, target: b}]\n",
        "nccl-leave",
    )
    passed(outcome)


def test_a_joining_worker_forms_a_new_world_on_nccl(run):
    outcome = run(
        TWO_GPUS
        + STREAM
        + "    duration_s: 8\n"
        + "    events: [{at: 2.0, do: join, worker: c, gpu: 1, worlds: {wc: [leader, c]}}]\n",
        "nccl-join",
    )
    real = outcome.runs[0]
    assert ops_by_world(real.history)["wc"], "the joined world never served"
    passed(outcome)


def test_a_world_added_and_removed_on_nccl(run):
    outcome = run(
        TWO_GPUS
        + STREAM
        + "    duration_s: 8\n    events:\n"
        + "      - {at: 2.0, do: add_world, world: x, members: [a, leader]}\n"
        + "      - {at: 5.0, do: remove_world, world: x}\n",
        "nccl-add-remove",
    )
    passed(outcome)


def test_all_reduce_sums_are_exact_on_nccl(run):
    outcome = run(
        TWO_GPUS
        + "    workload: {kind: allreduce, tensor_bytes: 1048576, interval_ms: 10}\n"
        + "    duration_s: 5\n",
        "nccl-allreduce",
    )
    integrity = next(v for v in outcome.verdicts if v.name == "integrity")
    assert integrity.verdict == "pass", integrity.detail
    passed(outcome)


# -- GPU faults (the process lives; only its GPU stops, fails or slows) -------------------


def fault_of(outcome: Outcome, do: str) -> dict:
    (fault,) = [e for e in outcome.runs[0].history.of_kind("fault") if e["do"] == do]
    return fault


def test_a_gpu_hang_stalls_its_world_which_serves_again_and_nobody_is_told(run):
    outcome = run(
        TWO_GPUS
        + STREAM
        + "    duration_s: 9\n    events: [{at: 2.0, do: gpu_hang, target: b, for_s: 3.0}]\n",
        "nccl-gpu-hang",
    )
    assert fault_of(outcome, "gpu_hang")["confirmed"] is True
    ops = ops_by_world(outcome.runs[0].history)
    assert not [e for e in ops["wb"] if 2.2 < e.t < 4.9], "wb served while b's GPU hung"
    assert max(e.t for e in ops["wb"]) > 6.0 and max(e.t for e in ops["wa"]) > 8.0
    passed(outcome)


def test_a_failed_gpus_worker_reports_its_world_and_the_rest_serves_on(run):
    outcome = run(
        TWO_GPUS
        + STREAM
        + "    duration_s: 8\n    events: [{at: 2.0, do: gpu_error, target: b}]\n",
        "nccl-gpu-error",
    )
    assert fault_of(outcome, "gpu_error")["confirmed"] is True
    assert "b" in broken_reports(outcome.runs[0].history).get("wb", {})
    assert max(e.t for e in ops_by_world(outcome.runs[0].history)["wa"]) > 7.0
    passed(outcome)


def test_a_slow_gpu_slows_its_world_and_breaks_nothing(run):
    outcome = run(
        TWO_GPUS
        + STREAM
        + "    duration_s: 8\n"
        + "    events: [{at: 2.0, do: gpu_slow, target: b, factor: 4, for_s: 3.0}]\n",
        "nccl-gpu-slow",
    )
    assert fault_of(outcome, "gpu_slow")["confirmed"] is True
    assert outcome.runs[0].broken_worlds == []
    passed(outcome)
