"""Each property on synthetic histories, both ways: a planted violation is flagged with
the right evidence, the clean history passes, and an unconfirmed fault never passes."""

import pytest

from mwsim.checks import check, check_conformance, expected_violations, judge
from mwsim.history import History, event
from mwsim.sim import RuntimeModel, simulate
from mwsim.testing import scenario

OP_HI = RuntimeModel().op_window(0.02)[1]  # a crashed peer's window at a 20 ms interval
CRASH = scenario(
    """
    name: crash
    topology: {generator: fan_in, workers: 3}
    duration_s: 8
    events: [{at: 3.0, do: crash, target: w2}]
    """
)
JOIN = scenario(
    """
    name: join
    topology: {generator: fan_in, workers: 2}
    duration_s: 12
    events:
      - {at: 1.0, do: join, worker: w3, worlds: {world3: [leader, w3]}}
      - {at: 2.0, do: add_world, world: x, members: [w1, w2]}
    """
)
HANG = scenario(
    """
    name: hang
    topology: {generator: fan_in, workers: 2}
    duration_s: 12
    events: [{at: 2.0, do: hang, target: w1, for_s: 8.0}]
    """
)


def verdicts(history, s):
    return {v.name: v for v in check(history, s)}


def edit(history, keep=lambda e: True, change=lambda e: e):
    return History([change(e) for e in history if keep(e)])


def with_attrs(e, **attrs):
    return event(e.t, e.kind, **{**e.attrs, **attrs})


@pytest.mark.parametrize("s", [CRASH, JOIN, HANG], ids=lambda s: s.name)
def test_clean_histories_pass_everything(s):
    result = verdicts(simulate(s), s)
    assert {v.verdict for v in result.values()} == {"pass"}, result


# -- progress -----------------------------------------------------------------------------


def test_progress_flags_a_stall_of_a_healthy_world():
    h = edit(
        simulate(CRASH),
        keep=lambda e: not (e.kind == "op" and e["world"] == "world1" and 4 < e.t < 6.5),
    )
    v = verdicts(h, CRASH)["progress"]
    assert v.verdict == "fail" and v.world == "world1"
    assert "world1: no op from 3.98 s to 6.50 s while healthy (window 2 s)" in v.detail


def test_progress_does_not_ask_a_broken_world_to_progress():
    h = simulate(CRASH)
    assert not [e for e in h.of_kind("op") if e["world"] == "world2" and e.t > 3.1]
    assert verdicts(h, CRASH)["progress"].verdict == "pass"


def test_progress_window_comes_from_expect():
    s = CRASH.model_copy(
        update={"expect": CRASH.expect.model_copy(update={"progress_window_s": 3.0})}
    )
    h = edit(
        simulate(s),
        keep=lambda e: not (e.kind == "op" and e["world"] == "world1" and 4 < e.t < 6.5),
    )
    assert verdicts(h, s)["progress"].verdict == "pass"


# -- detection ----------------------------------------------------------------------------


def test_detection_flags_a_missing_report():
    h = edit(simulate(CRASH), keep=lambda e: e.kind != "broken")
    v = verdicts(h, CRASH)["detection"]
    assert v.verdict == "fail" and v.world == "world2"
    assert (
        "leader did not report it broken within" in v.detail
        and "crash of w2 at 3.00 s; it never did" in v.detail
    )


def test_detection_flags_a_late_report():
    def late(e):
        return event(9.5, "broken", **e.attrs) if e.kind == "broken" else e

    h = edit(simulate(CRASH), change=late)
    assert "reported it at 9.50 s" in verdicts(h, CRASH)["detection"].detail


def test_hang_must_be_seen_within_the_watchdog_bound():
    h = simulate(HANG)
    assert verdicts(h, HANG)["detection"].verdict == "pass"
    h = edit(h, keep=lambda e: e.kind != "broken")
    v = verdicts(h, HANG)["detection"]
    assert v.verdict == "fail" and "hang of w1 at 2.00 s" in v.detail


def test_a_short_hang_need_not_be_seen():
    short = scenario(
        """
        topology: {generator: fan_in, workers: 2}
        duration_s: 10
        events: [{at: 2.0, do: hang, target: w1, for_s: 1.5}]
        """
    )
    assert verdicts(simulate(short), short)["detection"].verdict == "pass"


def test_a_crash_behind_a_cut_is_due_only_once_the_cut_heals():
    """w1 (on h1) dies while nothing from h1 reaches h0: the leader cannot see the reset
    before the heal at 3.5 s, so a report at 4.5 s is in time; without the cut it is late."""
    text = """
        topology: {generator: fan_in, workers: 1, hosts: 2}
        duration_s: 12
        events:
          - {at: 1.5, do: partition, from: [h1], to: [h0], for_s: 2.0}
          - {at: 2.0, do: crash, target: w1}
        """
    cut = scenario(text)
    loud = scenario(
        text.replace("- {at: 1.5, do: partition, from: [h1], to: [h0], for_s: 2.0}\n", "")
    )

    def late(e):
        return event(4.5, "broken", **e.attrs) if e.kind == "broken" else e

    h = edit(simulate(cut), change=late)
    assert verdicts(h, cut)["detection"].verdict == "pass"
    h = edit(simulate(loud), change=late)
    assert "reported it at 4.50 s" in verdicts(h, loud)["detection"].detail


def test_a_one_way_resetting_cut_is_silent_to_its_to_side():
    """Resets go back to the senders (h0): the leader sees the cut at once, w1 (on h1)
    only through the watchdog; a two-way resetting cut is loud to both."""
    text = """
        topology: {generator: fan_in, workers: 1, hosts: 2}
        duration_s: 12
        events: [{at: 2.0, do: partition, from: [h0], to: [h1], mode: reset}]
        """
    one_way = scenario(text)
    two_way = scenario(text.replace("from: [h0], to: [h1]", "groups: [[h0], [h1]]"))
    seen = {e["worker"]: e.t - 2.0 for e in simulate(one_way).of_kind("broken")}
    assert seen["leader"] <= OP_HI and seen["w1"] >= RuntimeModel().watchdog_window()[0]

    def late(e):
        return event(8.5, "broken", **e.attrs) if e.kind == "broken" and e["worker"] == "w1" else e

    assert verdicts(edit(simulate(one_way), change=late), one_way)["detection"].verdict == "pass"
    v = verdicts(edit(simulate(two_way), change=late), two_way)["detection"]
    assert "w1 did not report it broken" in v.detail


# -- no_false_alarm -----------------------------------------------------------------------


def test_false_alarm_is_flagged():
    h = simulate(CRASH)
    h = History([*h, event(2.5, "broken", world="world1", worker="leader", reason="planted")])
    v = verdicts(h, CRASH)["no_false_alarm"]
    assert v.verdict == "fail" and v.world == "world1"
    assert "world1: leader reported it broken at 2.50 s while no member was faulty" in v.detail


def test_a_report_before_the_fault_is_a_false_alarm():
    h = edit(
        simulate(CRASH),
        change=lambda e: event(2.0, "broken", **e.attrs) if e.kind == "broken" else e,
    )
    assert verdicts(h, CRASH)["no_false_alarm"].verdict == "fail"


# -- integrity ----------------------------------------------------------------------------


def test_wrong_data_is_flagged():
    h = edit(
        simulate(CRASH),
        change=lambda e: (
            with_attrs(e, ok=False)
            if e.kind == "op" and e["world"] == "world3" and e["seq"] == 40
            else e
        ),
    )
    v = verdicts(h, CRASH)["integrity"]
    assert (
        v.verdict == "fail"
        and "world3: op 40 at leader from w3 at 0.80 s carried wrong data" in v.detail
    )


def test_duplicate_is_flagged():
    h = simulate(CRASH)
    dup = next(e for e in h.of_kind("op") if e["world"] == "world1" and e["seq"] == 10)
    h = History([*h, event(dup.t + 0.005, "op", **dup.attrs)])
    assert "duplicate or out of order" in verdicts(h, CRASH)["integrity"].detail


def test_a_gap_while_healthy_is_flagged_but_not_after_a_fault():
    h = edit(
        simulate(CRASH),
        keep=lambda e: not (e.kind == "op" and e["world"] == "world1" and e["seq"] == 77),
    )
    assert "op(s) 77 lost while healthy" in verdicts(h, CRASH)["integrity"].detail
    resumed = scenario(
        """
        topology: {generator: fan_in, workers: 2}
        duration_s: 10
        events: [{at: 2.0, do: hang, target: w1, for_s: 1.0}]
        """
    )
    h = simulate(resumed)
    renumbered = edit(
        h,
        change=lambda e: (
            with_attrs(e, seq=e["seq"] + 5)
            if e.kind == "op" and e["world"] == "world1" and e.t > 3.0
            else e
        ),
    )
    assert verdicts(renumbered, resumed)["integrity"].verdict == "pass"


# -- scale_out ----------------------------------------------------------------------------


def test_slow_first_op_of_a_joined_world_is_flagged():
    h = edit(
        simulate(JOIN), keep=lambda e: not (e.kind == "op" and e["world"] == "world3" and e.t < 4.5)
    )
    v = verdicts(h, JOIN)["scale_out"]
    assert v.verdict == "fail" and v.world == "world3"
    assert "no op within 3 s of the join at 1.00 s (the first at 4.5" in v.detail


def test_added_world_that_never_serves_is_flagged():
    h = edit(simulate(JOIN), keep=lambda e: not (e.kind == "op" and e["world"] == "x"))
    assert (
        "x: no op within 2 s of the add_world at 2.00 s (none at all)"
        in verdicts(h, JOIN)["scale_out"].detail
    )


# -- hygiene ------------------------------------------------------------------------------


def test_hygiene_fail_and_missing():
    h = edit(
        simulate(CRASH),
        change=lambda e: (
            with_attrs(e, ok=False, detail="process groups still alive: 4242")
            if e.kind == "hygiene"
            else e
        ),
    )
    v = verdicts(h, CRASH)["hygiene"]
    assert v.verdict == "fail" and "4242" in v.detail
    h = edit(simulate(CRASH), keep=lambda e: e.kind != "hygiene")
    assert verdicts(h, CRASH)["hygiene"].verdict == "unknown"


# -- unconfirmed faults -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["unconfirmed", "missing"])
def test_unconfirmed_fault_never_passes(how):
    if how == "unconfirmed":
        h = edit(
            simulate(CRASH),
            change=lambda e: with_attrs(e, confirmed=False) if e.kind == "fault" else e,
        )
    else:
        h = edit(simulate(CRASH), keep=lambda e: e.kind != "fault")
    result = verdicts(h, CRASH)
    assert "pass" not in {v.verdict for v in result.values()}
    assert "crash of w2 at 3.00 s was not confirmed" in result["detection"].detail
    overall, _ = judge(list(result.values()), set())
    assert overall == "unknown"


# -- conformance --------------------------------------------------------------------------


def test_conformance_passes_on_itself_and_flags_differences():
    predicted = simulate(CRASH, seed=1)
    assert check_conformance(simulate(CRASH, seed=2), predicted, CRASH).verdict == "pass"
    late = edit(
        predicted, change=lambda e: event(5.0, "broken", **e.attrs) if e.kind == "broken" else e
    )
    v = check_conformance(late, predicted, CRASH)
    assert (
        v.verdict == "fail"
        and f"reported it broken at 5.00 s, outside the predicted [3.00, {3.0 + OP_HI:.2f}] s"
        in v.detail
    )
    missing = edit(predicted, keep=lambda e: e.kind != "broken")
    assert (
        "was predicted to report it broken" in check_conformance(missing, predicted, CRASH).detail
    )
    extra = History([*predicted, event(4.0, "broken", world="world1", worker="w1", reason="x")])
    assert "the model predicts no report" in check_conformance(extra, predicted, CRASH).detail


# -- expected violations ------------------------------------------------------------------


def test_negative_control_passes_only_with_exactly_its_violations():
    s = CRASH.model_copy(update={"expect": replace_expect(CRASH, ["detection"])})
    missing = edit(simulate(s), keep=lambda e: e.kind != "broken")
    overall, marked = judge(check(missing, s), expected_violations(s, "real"))
    assert overall == "pass" and [v.name for v in marked if v.expected] == ["detection"]
    overall, marked = judge(check(simulate(s), s), expected_violations(s, "real"))
    assert overall == "fail"
    assert (
        "expected to be violated, but it held"
        in next(v for v in marked if v.name == "detection").detail
    )
    assert expected_violations(s, "sim") == set()


def replace_expect(s, violations):
    return s.expect.model_copy(update={"violations": violations})


# -- the harness's own lag ----------------------------------------------------------------


def with_lags(*records):
    h = edit(
        simulate(CRASH),
        keep=lambda e: not (e.kind == "op" and e["world"] == "world1" and 4 < e.t < 6.5),
    )
    return History([*h, *(event(t, "lag", **fields) for t, fields in records)])


CPU_BUSY = (6.0, {"source": "cpu", "lag_s": 0.5, "share": 0.9, "detail": "busy 90 %"})


def test_a_stall_while_the_controller_fell_behind_is_unknown_with_that_evidence():
    h = with_lags((5.0, {"source": "controller", "lag_s": 1.2}))
    v = verdicts(h, CRASH)["progress"]
    assert v.verdict == "unknown"
    assert "world1: no op from 3.98 s to 6.50 s" in v.detail
    assert "the harness fell behind: the controller ran 1.20 s late at 5.00 s" in v.detail


def test_an_agents_late_loop_excuses_only_with_the_cpu_saturated_and_only_its_worlds():
    member = (6.2, {"source": "agent", "worker": "w1", "lag_s": 1.5})
    v = verdicts(with_lags(member, CPU_BUSY), CRASH)["progress"]
    assert v.verdict == "unknown" and "agent w1's event loop ran 1.50 s late" in v.detail
    assert "CPU was saturated (busy 90 %)" in v.detail
    # an idle machine: the runtime may have blocked the loop itself
    assert verdicts(with_lags(member), CRASH)["progress"].verdict == "fail"
    # a worker outside world1 falling behind says nothing about world1
    other = (6.2, {"source": "agent", "worker": "w3", "lag_s": 1.5})
    assert verdicts(with_lags(other, CPU_BUSY), CRASH)["progress"].verdict == "fail"
    # a lag at another time neither
    early = (1.0, {"source": "controller", "lag_s": 0.5})
    assert verdicts(with_lags(early), CRASH)["progress"].verdict == "fail"


def test_a_hung_agents_own_stop_is_not_the_harness_falling_behind():
    h = edit(simulate(HANG), keep=lambda e: e.kind != "broken")
    stop = event(10.0, "lag", source="agent", worker="w1", lag_s=8.0)
    busy = event(10.0, "lag", source="cpu", lag_s=8.0, share=1.0)
    v = verdicts(History([*h, stop, busy]), HANG)["detection"]
    assert v.verdict == "fail" and "hang of w1 at 2.00 s" in v.detail


def test_a_lag_excuses_only_a_violation_it_is_long_enough_to_explain():
    h = simulate(CRASH)
    alarm = event(2.5, "broken", world="world1", worker="leader", reason="planted")
    busy = event(2.45, "lag", source="cpu", lag_s=3.0, share=0.8)

    def no_false_alarm(stall_s):
        starved = event(2.4, "lag", source="agent", worker="w1", lag_s=stall_s)
        return verdicts(History([*h, alarm, starved, busy]), CRASH)["no_false_alarm"]

    # the watchdog flags a peer silent for 2.7 s: a stall that long may have caused it
    v = no_false_alarm(3.0)
    assert v.verdict == "unknown" and "reported it broken at 2.50 s" in v.detail
    assert no_false_alarm(1.0).verdict == "fail"

    def late(e):
        return event(e.t + 1.2, "broken", **e.attrs) if e.kind == "broken" else e

    reported_late = edit(h, change=late)
    assert verdicts(reported_late, CRASH)["detection"].verdict == "fail"
    behind = event(3.8, "lag", source="controller", lag_s=0.6)
    v = verdicts(History([*reported_late, behind]), CRASH)["detection"]
    assert v.verdict == "unknown" and "controller ran 0.60 s late" in v.detail
    # never reported: half a second behind cannot explain five seconds of silence
    missed = edit(h, keep=lambda e: e.kind != "broken")
    assert verdicts(History([*missed, behind]), CRASH)["detection"].verdict == "fail"


# -- survival, errors, and scale operations the runtime does not complete -------------------

LEAVE = scenario(
    """
    name: leave
    topology: {generator: fan_in, workers: 2}
    duration_s: 14
    events:
      - {at: 3.0, do: leave, target: w2}
    """
)
REMOVE = scenario(
    """
    name: remove
    topology: {generator: fan_in, workers: 2}
    duration_s: 8
    events:
      - {at: 2.0, do: add_world, world: x, members: [w1, w2]}
      - {at: 5.0, do: remove_world, world: x}
    """
)


def with_event(history, new):
    return History(sorted([*history, new], key=lambda e: e.t))


def test_a_worker_no_fault_targeted_must_not_die():
    h = with_event(simulate(CRASH), event(4.0, "exit", worker="leader", code=-9, expected=False))
    v = verdicts(h, CRASH)["survival"]
    assert v.verdict == "fail" and v.at == 4.0
    assert v.detail.startswith("leader was killed by signal 9 at 4.00 s though no fault targeted")
    assert "(its last record: op on world" in v.detail and " at 3.9" in v.detail
    h = with_event(simulate(CRASH), event(4.0, "exit", worker="w1", code=3, expected=False))
    assert "w1 exited with code 3 at 4.00 s" in verdicts(h, CRASH)["survival"].detail
    assert v.evidence == ("an untargeted worker was killed by signal 9",)


def test_a_targeted_worker_may_die_and_an_expected_exit_is_no_death():
    # w2 was crashed at 3 s: an exit of its own after that is the fault's doing
    h = with_event(simulate(CRASH), event(3.5, "exit", worker="w2", code=1, expected=False))
    assert verdicts(h, CRASH)["survival"].verdict == "pass"
    h = with_event(simulate(CRASH), event(4.0, "exit", worker="w1", code=0, expected=True))
    assert verdicts(h, CRASH)["survival"].verdict == "pass"


def test_a_death_after_the_judged_interval_is_not_judged():
    h = with_event(simulate(CRASH), event(8.5, "exit", worker="w1", code=-9, expected=False))
    assert verdicts(h, CRASH)["survival"].verdict == "pass"


def test_an_exception_that_is_not_the_failure_signal_is_an_error():
    bad = event(
        5.02,
        "error",
        world="x",
        worker="w1",
        message="remove_world raised KeyError: 'x'",
        source="runtime",
        op="remove_world",
        exception="KeyError",
    )
    v = verdicts(with_event(simulate(REMOVE), bad), REMOVE)["errors"]
    assert v.verdict == "fail" and v.world == "x"
    assert v.detail == "w1 on x at 5.02 s: remove_world raised KeyError: 'x'"
    assert v.evidence == ("remove_world raised KeyError",)


def test_a_failure_signal_on_a_healthy_world_is_a_false_alarm_with_the_exception():
    early = event(
        2.5,
        "broken",
        world="world1",
        worker="leader",
        reason="the runtime raised BrokenWorldException: world1",
        raised="BrokenWorldException",
        op="recv",
    )
    result = verdicts(with_event(simulate(CRASH), early), CRASH)
    alarm = result["no_false_alarm"]
    assert alarm.verdict == "fail" and alarm.evidence == ("reported broken while healthy",)
    assert alarm.detail == (
        "world1: leader reported it broken at 2.50 s while no member was faulty "
        "(recv raised BrokenWorldException)"
    )
    assert result["errors"].verdict == "pass"  # its own failure signal: not an error


def test_an_error_of_the_harness_itself_makes_errors_unknown_not_failed():
    own = event(
        4.0, "error", worker="w1", message="workload failed: ValueError()", source="harness"
    )
    v = verdicts(with_event(simulate(CRASH), own), CRASH)["errors"]
    assert v.verdict == "unknown" and "the harness hit an error at 4.00 s (w1)" in v.detail


def incomplete_leave(e, **how):
    if e.kind == "fault" and e["do"] == "leave":
        return with_attrs(e, confirmed=False, confirm_s=None, delivered=True, **how)
    return e


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (None, "its process was still running 5 s later"),
        (1, "its process exited with code 1"),
        (-9, "its process was killed by signal 9"),
    ],
)
def test_a_leave_the_runtime_does_not_complete_violates_scale_out(code, said):
    h = edit(simulate(LEAVE), change=lambda e: incomplete_leave(e, code=code))
    result = verdicts(h, LEAVE)
    v = result["scale_out"]
    assert v.verdict == "fail" and v.detail == f"w2's leave at 3.00 s did not complete: {said}"
    assert v.evidence == ("leave not completed",)
    # delivered, so not a doubt about the injection: the other properties are judged
    assert result["progress"].verdict == "pass" and result["detection"].verdict == "pass"


def test_a_leave_that_was_never_delivered_stays_unconfirmed():
    h = edit(
        simulate(LEAVE),
        change=lambda e: (
            with_attrs(e, confirmed=False, delivered=False)
            if e.kind == "fault" and e["do"] == "leave"
            else e
        ),
    )
    result = verdicts(h, LEAVE)
    assert result["scale_out"].verdict == "unknown"
    assert "leave of w2 at 3.00 s was not confirmed" in result["scale_out"].detail


def test_a_world_removal_every_member_must_complete():
    h = edit(simulate(REMOVE), keep=lambda e: not (e.kind == "left" and e["worker"] == "w2"))
    v = verdicts(h, REMOVE)["scale_out"]
    assert v.verdict == "fail" and v.world == "x"
    assert v.detail == "x: w2 did not complete remove_world within 1.04 s of 5.00 s; never did"
    assert verdicts(simulate(REMOVE), REMOVE)["scale_out"].detail.endswith(
        "1 world removal(s) completed"
    )


def test_scale_out_says_a_world_was_added_when_none_was_due():
    s = scenario(
        """
        name: added-then-crashed
        topology: {generator: fan_in, workers: 2}
        duration_s: 6
        events:
          - {at: 2.0, do: add_world, world: x, members: [w1, w2]}
          - {at: 2.005, do: crash, target: w2}
        """
    )
    h = edit(simulate(s), keep=lambda e: not (e.kind == "op" and e["world"] == "x"))
    v = verdicts(h, s)["scale_out"]
    assert v.verdict == "pass"
    assert v.detail.startswith("1 new world(s), none due to serve")


def test_each_violation_names_the_kinds_of_its_evidence_without_names():
    h = edit(
        simulate(CRASH),
        keep=lambda e: not (e.kind == "op" and e["world"] == "world1" and 5 < e.t < 7.5),
    )
    v = verdicts(h, CRASH)["progress"]
    assert v.verdict == "fail" and v.evidence == ("no op while healthy",)
    assert v.at is not None and 4.9 < v.at < 5.1
    assert v.to_dict()["evidence"] == ["no op while healthy"]


# -- GPU faults: what MultiWorld's design says is noticed ------------------------------------

GPU = scenario(
    """
    name: gpu
    topology:
      generator: explicit
      hosts: {h0: {gpus: 2}, h1: {gpus: 2}}
      workers: {leader: {host: h0, gpu: 0}, a: {host: h0, gpu: 1}, b: {host: h1, gpu: 0}, c: {host: h1, gpu: 1}}
      worlds: {wa: [leader, a], wb: [leader, b], wc: [leader, c]}
    backend: nccl
    duration_s: 12
    events:
      - {at: 2.0, do: gpu_slow, target: a, factor: 4, for_s: 2}
      - {at: 3.0, do: gpu_hang, target: b, for_s: 3}
      - {at: 7.0, do: gpu_error, target: c}
    """
)


def test_gpu_faults_on_the_model_pass_and_only_the_failed_gpus_worker_reports():
    history = simulate(GPU)
    assert {v.verdict for v in verdicts(history, GPU).values()} == {"pass"}
    reports = [(e["world"], e["worker"]) for e in history.of_kind("broken")]
    assert reports == [("wc", "c")]  # nobody notices the GPU hang; c's own op fails
    assert [e["do"] for e in history.of_kind("resumed")] == ["gpu_slow", "gpu_hang"]


def test_a_failed_gpus_worker_must_report_its_worlds():
    h = edit(simulate(GPU), keep=lambda e: e.kind != "broken")
    v = verdicts(h, GPU)["detection"]
    assert v.verdict == "fail" and v.world == "wc"
    assert v.detail.startswith("wc: c did not report it broken within")
    assert v.evidence == ("gpu_error never reported",)


def test_a_gpu_hang_must_be_reported_only_where_expect_asks():
    demanding = GPU.model_copy(
        update={"expect": GPU.expect.model_copy(update={"detect_within_s": {"gpu_hang": 2.0}})}
    )
    v = verdicts(simulate(GPU), demanding)["detection"]
    assert v.verdict == "fail" and v.world == "wb"
    assert "wb: leader did not report it broken within 2.00 s of the gpu_hang of b" in v.detail


def test_a_gpu_hang_stops_its_world_without_a_progress_violation_and_it_serves_again():
    history = simulate(GPU)
    wb = [e.t for e in history.of_kind("op") if e["world"] == "wb"]
    assert not [t for t in wb if 3.0 < t < 6.0] and any(t > 6.0 for t in wb)


def test_a_removal_is_judged_after_a_members_hang_has_ended():
    s = scenario(
        """
        name: hang-then-remove
        topology: {generator: fan_in, workers: 2}
        duration_s: 8
        events:
          - {at: 2.0, do: add_world, world: x, members: [w1, w2]}
          - {at: 2.5, do: hang, target: w1, for_s: 0.5}
          - {at: 5.0, do: remove_world, world: x}
        """
    )
    h = edit(simulate(s), keep=lambda e: not (e.kind == "left" and e["worker"] == "w2"))
    v = verdicts(h, s)["scale_out"]
    assert v.verdict == "fail" and "w2 did not complete remove_world" in v.detail


# -- a check that raises ------------------------------------------------------------------


def test_a_check_that_raises_is_unknown_with_its_traceback_and_the_others_still_judge(
    monkeypatch,
):
    from mwsim.checks import judging

    history = simulate(CRASH)
    normal = verdicts(history, CRASH)

    def broken_check(f):
        raise ZeroDivisionError("a bug in the check")

    monkeypatch.setitem(judging.CHECKS, "detection", broken_check)
    result = verdicts(history, CRASH)
    raised = result["detection"]
    assert raised.verdict == "unknown"
    assert "ZeroDivisionError: a bug in the check" in raised.detail
    assert "broken_check" in raised.traceback and raised.to_dict()["traceback"]
    others = {name: v for name, v in result.items() if name != "detection"}
    assert others == {name: v for name, v in normal.items() if name != "detection"}
    assert {v.verdict for v in others.values()} == {"pass"}
    # the overall verdict is unknown (in doubt), never a pass
    assert judge(list(result.values()), set())[0] == "unknown"
