"""The serve workload for real: requests through real MultiWorld worlds, a replica
crashed under load, a pipeline's middle stage crashed, answers checked against the
model slices, and the torch baseline (one process group) as the negative control."""

from pathlib import Path

import pytest

from mwsim import checks, load_scenario
from mwsim.history import Admitted, Answered, Unserved

ROOT = Path(__file__).parents[2]


def judged(history, scenario) -> dict[str, checks.Verdict]:
    return {v.name: v for v in checks.check(history, scenario)}


def passing(replay, name: str):
    """Replay a library scenario for real; every property must hold. Its scenario,
    history and verdicts."""
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    _, history = replay(scenario)
    verdicts = judged(history, scenario)
    assert all(v.verdict == "pass" for v in verdicts.values()), [
        (v.name, v.detail) for v in verdicts.values() if v.verdict != "pass"
    ]
    return scenario, history, verdicts


@pytest.mark.parametrize(
    ("name", "crashed"),
    [("serve-fanin-crash", "w2"), ("serve-pipeline-middle-crash", "s1r0")],
)
def test_requests_are_served_through_a_replica_crash(replay, name, crashed):
    scenario, history, verdicts = passing(replay, name)
    requests, answers = history.of(Admitted), history.of(Answered)
    assert len(requests) > 200 and len(answers) >= 0.95 * len(requests)
    assert all(a.right for a in answers)  # checked against the model slices' own outputs
    stages = 3 if "pipeline" in name else 1
    assert all(len(a.path) == stages for a in answers)
    served_by = {r for a in answers for r in a.path}
    assert crashed in served_by  # it served before its crash ...
    assert crashed not in {r for a in answers if a.t > 5.0 for r in a.path}  # ... not after
    assert "during" in verdicts["slo"].detail and "after" in verdicts["slo"].detail
    if stages == 1:
        _planted_into(history, scenario)


def _planted_into(history, scenario) -> None:
    """The real history with a lost request, a duplicated answer, a wrong answer and a
    late phase planted: each is caught by the right property."""
    from dataclasses import replace

    from mwsim.history import History

    records = list(history)
    answers = [r for r in records if isinstance(r, Answered)]
    lost, twice, wrong = answers[10], answers[20], answers[30]
    planted = [r for r in records if r is not lost]
    planted.append(replace(twice, t=twice.t + 0.01))
    planted = [replace(r, right=False) if r is wrong else r for r in planted]
    got = judged(History(planted), scenario)
    assert got["served"].verdict == "fail"
    kinds = set(got["served"].evidence)
    assert {"request lost", "request ended twice", "wrong answer"} <= kinds, kinds
    late = [
        replace(r, latency_s=5.0) if isinstance(r, Answered) and r.t > 7 else r for r in records
    ]
    slo = judged(History(late), scenario)["slo"]
    assert slo.verdict == "fail" and slo.detail.startswith("after (")


def test_the_torch_baseline_stops_serving_when_one_replica_dies(replay):
    """One process group for every world: a crash takes them all, so requests fail while
    replicas no fault touched are there (served), and goodput collapses."""
    scenario = load_scenario(ROOT / "scenarios" / "serve-fanin-crash.yaml").model_copy(
        update={"runtime": "torch"}
    )
    _, history = replay(scenario, steady=False)
    verdicts = judged(history, scenario)
    assert verdicts["served"].verdict == "fail", verdicts["served"].detail
    assert "untouched by any fault" in verdicts["served"].detail
    assert verdicts["goodput"].verdict == "fail", verdicts["goodput"].detail
    assert len(history.of(Unserved)) > 0


def test_a_partition_between_stages_leaves_the_path_on_one_host_serving(replay):
    _, history, _ = passing(replay, "serve-partition-between-stages")
    after = [a for a in history.of(Answered) if a.t > 5.0]
    assert after and {a.path for a in after} == {("s0r1", "s1r1")}  # the path on h0


def test_a_joined_replica_takes_requests_under_bursty_load(replay):
    _, history, _ = passing(replay, "serve-bursty-join")
    paths = [a.path for a in history.of(Answered)]
    assert ("w4",) in paths and all(a.path != ("w4",) for a in history.of(Answered) if a.t < 4.0)
