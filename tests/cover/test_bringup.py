"""A deployment that did not come up, judged from synthetic histories: the runtime's doing
is a violation with its evidence (a world that formed and never served: progress; a
worker that died: survival; a world that never formed while bring-up stalled: progress;
a runtime that raised: errors), the harness's doing leaves every property unknown, and an
unclear cause is decided by the reference runtime's ``reference`` record."""

import json

from mwsim import report
from mwsim.checks import bringup_cause, bringup_failure, check, facts, judge
from mwsim.checks import conformance_of as conform
from mwsim.history import Cause, History, event
from mwsim.runs import recheck
from mwsim.sim import simulate
from mwsim.testing import scenario
from mwsim.timing import RuntimeModel

S = scenario(
    """
    name: bringup
    topology: {generator: fan_in, workers: 2}
    duration_s: 6
    events: [{at: 1.0, do: crash, target: w2}]
    """
)
STALL_S = RuntimeModel().serve_stall_s(2.0)  # 4.75 s at the default 2 s window


def formed(t: float = -0.1) -> list:
    return [
        event(-0.5, "run", scenario="bringup", mode="real", runtime="mutant-x"),
        *(
            event(t, "joined", world=w, worker=m)
            for w, ms in (("world1", ("leader", "w1")), ("world2", ("leader", "w2")))
            for m in ms
        ),
    ]


def failed(t: float, stage: str, cause: str, waiting=("world1", "world2"), **more) -> list:
    reason = more.pop("reason", f"bring-up stalled: nothing moved for {STALL_S:g} s")
    return [
        event(
            t,
            "bringup",
            ok=False,
            stage=stage,
            cause=cause,
            reason=reason,
            waiting=list(waiting),
            **more,
        ),
        event(t, "phase", name="stop"),
        *(
            event(t + 0.01, "exit", worker=w, code=-9, expected=True)
            for w in ("leader", "w1", "w2")
        ),
        event(t + 0.02, "hygiene", ok=True, detail="clean"),
    ]


def served_elsewhere(served: bool | None) -> list:
    return [event(9.0, "reference", runtime="multiworld", served=served, detail="said")]


def verdicts(history):
    return {v.name: v for v in check(history, S)}


def never_served(cause="unclear", reference=True):
    more = served_elsewhere(reference) if reference is not None else []
    return History([*formed(), *failed(STALL_S, "serve", cause, stalled_s=STALL_S), *more])


def test_worlds_that_formed_and_never_served_violate_progress():
    v = verdicts(never_served())
    progress = v["progress"]
    assert progress.verdict == "fail" and progress.worlds == ("world1", "world2")
    assert progress.evidence == ("never served after forming",)
    assert progress.detail.startswith(
        "world1: formed, then served no op in the 4.75 s bring-up waited for one (window 2 s)"
    )
    # none of the scenario's events was played: nothing is owed for the crash at 1.0 s
    assert {v[name].verdict for name in ("detection", "survival", "errors", "scale_out")} == {
        "pass"
    }
    assert judge(list(v.values()), set())[0] == "fail"


def test_with_no_reference_record_an_unclear_stall_is_the_runtimes():
    # the runtime under test is the reference itself (or none was asked): nobody to decide
    assert verdicts(never_served(reference=None))["progress"].verdict == "fail"
    assert bringup_cause(facts(never_served(reference=None), S)) is Cause.RUNTIME


def test_an_unclear_stall_the_reference_also_had_is_not_the_runtimes():
    history = never_served(reference=False)
    v = verdicts(history)
    assert {x.verdict for x in v.values()} == {"unknown"}
    assert "on the reference runtime too" in v["progress"].detail
    assert bringup_cause(facts(history, S)) is Cause.HARNESS


def test_a_harness_failure_at_bring_up_leaves_every_property_unknown_naming_it():
    reason = "the harness failed: the fork server (pid 7) exited (code -9)"
    history = History([*formed(), *failed(0.0, "form", "harness", reason=reason)])
    v = verdicts(history)
    assert {x.verdict for x in v.values()} == {"unknown"}
    assert all(
        "by the harness's doing, not the runtime's: the harness failed" in x.detail
        for x in v.values()
    )
    f = facts(history, S)
    assert bringup_failure(f) == {
        "stage": "form",
        "cause": "harness",
        "reason": reason,
        "headline": reason,
    }


def test_a_worker_that_died_during_bring_up_violates_survival():
    died = event(-0.05, "exit", worker="leader", code=-9, expected=False, detail="")
    reason = "agent leader exited during bring-up (code -9)"
    history = History(
        [
            *formed()[:1],
            died,
            *failed(0.0, "form", "unclear", reason=reason),
            *served_elsewhere(True),
        ]
    )
    v = verdicts(history)
    assert v["survival"].verdict == "fail"
    assert v["survival"].detail.startswith("leader was killed by signal 9 at -0.05 s")
    assert v["progress"].verdict == "pass"  # the others were cut short, not stalled
    assert v["no_false_alarm"].verdict == "pass"


def test_a_report_after_a_member_died_at_bring_up_is_no_false_alarm():
    died = event(-0.05, "exit", worker="leader", code=-9, expected=False, detail="")
    report = event(-0.04, "broken", world="world1", worker="w1", reason="peer gone")
    history = History([*formed(), died, report, *failed(0.0, "form", "runtime", reason="x")])
    assert verdicts(history)["no_false_alarm"].verdict == "pass"


def test_worlds_not_formed_while_bring_up_stalled_violate_progress_and_a_raise_errors():
    raised = event(
        -9.0,
        "error",
        worker="w2",
        world="world2",
        message="init_world raised ValueError: no",
        source="runtime",
        op="init_world",
        exception="ValueError",
    )
    history = History(
        [
            *formed()[:3],  # world1 formed; world2 never did
            raised,
            *failed(0.0, "form", "runtime", waiting=["world2"], stalled_s=10.0),
        ]
    )
    v = verdicts(history)
    assert v["progress"].verdict == "fail" and v["progress"].world == "world2"
    assert v["progress"].evidence == ("not formed at bring-up",)
    assert v["errors"].verdict == "fail" and v["errors"].evidence == (
        "init_world raised ValueError",
    )


def test_the_harness_falling_behind_for_the_whole_stall_excuses_it():
    lag = event(STALL_S, "lag", source="controller", lag_s=STALL_S)
    history = History([*never_served(), lag])
    progress = verdicts(history)["progress"]
    assert progress.verdict == "unknown" and "the harness fell behind" in progress.detail
    short = event(STALL_S, "lag", source="controller", lag_s=0.5)  # explains too little
    assert verdicts(History([*never_served(), short]))["progress"].verdict == "fail"


def test_conformance_is_not_compared_when_the_deployment_did_not_come_up():
    verdict = conform(facts(never_served(), S), facts(simulate(S), S))
    assert verdict.verdict == "unknown"
    assert verdict.detail.startswith("not compared: the real deployment did not come up")


def test_a_stored_history_is_judged_again_the_same_way(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text(never_served().to_jsonl())
    again = {v.name: v.verdict for v in recheck(path, S).verdicts}
    assert again == {name: v.verdict for name, v in verdicts(never_served()).items()}


def test_the_report_and_the_picture_say_how_bring_up_failed(tmp_path):
    path = tmp_path / "real" / "history.jsonl"
    path.parent.mkdir()
    path.write_text(never_served().to_jsonl())
    outcome = recheck(path, S)
    report.write_artifacts(outcome)
    (run,) = json.loads((tmp_path / "real" / "report.json").read_text())["runs"]
    assert run["bringup"]["stage"] == "serve" and run["bringup"]["cause"] == "runtime"
    assert run["bringup"]["reference"] == "said"
    assert (tmp_path / "real" / "timeline.png").stat().st_size > 0
    table = report.verdict_table(outcome)
    assert str(table.caption).startswith("bring-up failed (serve stage, the runtime's doing)")
