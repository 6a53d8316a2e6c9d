"""What a runtime does that no fault explains, judged on real processes: purpose-built
runtimes (``mwsim.runtimes.mutants``) that die when not targeted, raise from
``remove_world``, never finish a leave or a removal, and lack ``all_reduce``; and a real
second build of MultiWorld (0.2.0, ``examples/multiworld-0.2.0``) run through its adapter
package, never the installed 0.2.3."""

from pathlib import Path

import pytest

from mwsim import read_history, runtimes
from mwsim.checks import Result
from mwsim.errors import Inconclusive
from mwsim.history import Mode
from mwsim.runs import run_scenario
from mwsim.testing import scenario

CRASH = """
topology: {generator: fan_in, workers: 3}
duration_s: 4
events: [{at: 1.0, do: crash, target: w2}]
"""


def real(text, runtime, out, zygote):
    s = scenario(text).model_copy(update={"runtime": runtime})
    outcome = run_scenario(s, mode=Mode.REAL, out_dir=out, zygote=zygote)
    (run,) = outcome.runs
    assert run.status == "completed", run.reason
    return outcome, {v.name: v for v in outcome.verdicts}, read_history(run.history_path)


def test_a_worker_its_own_runtime_kills_violates_survival(tmp_path, zygote):
    outcome, verdicts, history = real(CRASH, "mutant-self-kill", tmp_path, zygote)
    survival = verdicts["survival"]
    assert outcome.verdict == Result.FAIL and survival.verdict == Result.FAIL
    assert survival.detail.startswith("leader was killed by signal 9 at 1.5")
    assert "though no fault targeted it (its last record: " in survival.detail
    exits = {e["worker"]: e for e in history.of_kind("exit")}
    assert exits["leader"]["code"] == -9 and exits["leader"]["expected"] is False
    assert verdicts["detection"].verdict == Result.PASS  # it reported the crash first


def test_an_exception_from_remove_world_is_an_error_and_the_removal_incomplete(tmp_path, zygote):
    _, verdicts, history = real(
        """
        topology: {generator: fan_in, workers: 3}
        duration_s: 4
        events:
          - {at: 0.5, do: add_world, world: x, members: [w1, w2]}
          - {at: 1.5, do: remove_world, world: x}
          - {at: 2.0, do: leave, target: w3}
        """,
        "mutant-remove-raises",
        tmp_path,
        zygote,
    )
    errors = verdicts["errors"]
    assert errors.verdict == Result.FAIL and errors.world == "x"
    assert "remove_world raised KeyError: 'x'" in errors.detail
    assert set(errors.evidence) == {"remove_world raised KeyError"}
    assert {e["worker"] for e in history.of_kind("error")} == {"w1", "w2", "w3"}
    scale = verdicts["scale_out"]
    assert scale.verdict == Result.FAIL and scale.evidence == ("remove_world not completed",)
    # the leave itself completed (w3 exited 0); only its removal of world3 raised
    (leave,) = [e for e in history.of_kind("fault") if e["do"] == "leave"]
    assert leave["confirmed"] is True


def test_a_leave_and_a_removal_the_runtime_never_completes_violate_scale_out(tmp_path, zygote):
    outcome, verdicts, history = real(
        """
        topology: {generator: fan_in, workers: 3}
        duration_s: 4
        events:
          - {at: 0.5, do: add_world, world: x, members: [w1, w2]}
          - {at: 1.0, do: remove_world, world: x}
          - {at: 1.5, do: leave, target: w3}
        """,
        "mutant-stuck-leave",
        tmp_path,
        zygote,
    )
    scale = verdicts["scale_out"]
    assert outcome.verdict == Result.FAIL and scale.verdict == Result.FAIL
    assert set(scale.evidence) == {"leave not completed", "remove_world not completed"}
    (leave,) = [e for e in history.of_kind("fault") if e["do"] == "leave"]
    assert leave["confirmed"] is False and leave["delivered"] is True
    assert "w3's leave at 1.5" in scale.detail or "w3's leave" in str(outcome.verdicts)
    assert verdicts["hygiene"].verdict == Result.PASS  # the stuck processes were reaped


def test_a_runtime_without_all_reduce_is_inconclusive_before_anything_starts(tmp_path, zygote):
    s = scenario(
        "topology: {generator: fan_in, workers: 2}\nworkload: {kind: allreduce}\n"
    ).model_copy(update={"runtime": "mutant-no-allreduce"})
    with pytest.raises(Inconclusive, match="does not support all_reduce"):
        run_scenario(s, mode=Mode.REAL, out_dir=tmp_path, zygote=zygote)
    assert not (tmp_path / "real" / "history.jsonl").exists()


OTHER = "multiworld-0.2.0"


def test_another_build_of_multiworld_runs_through_its_adapter_package(tmp_path, zygote):
    if OTHER not in runtimes.names():
        pytest.skip(f"the {OTHER} example adapter is not installed (make install installs it)")
    outcome, _, history = real(CRASH, OTHER, tmp_path, zygote)
    assert outcome.verdict == Result.PASS, [(v.name, v.detail) for v in outcome.verdicts]
    package = history.meta["runtime_package"]
    build = Path(__file__).resolve().parents[2] / "examples" / OTHER / "build" / "multiworld"
    assert package["version"] == "0.2.0" and Path(package["location"]) == build
    imported = package["imported"]  # what the fork server (and every agent) loaded
    assert set(imported) == {"multiworld.manager", "multiworld.communicator"}
    assert all(Path(path).parent == build for path in imported.values())
    # the adapter prints at import: into the fork server's log, not its protocol
    log = (tmp_path / "real" / "logs" / "zygote.log").read_text()
    assert "mwsim-multiworld-020: MultiWorld 0.2.0 from" in log
