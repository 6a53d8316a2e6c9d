"""Real replays of each fault and scale kind, judged on the recorded history."""

from mwsim.testing import (
    broken_reports,
    faults,
    in_force,
    largest_gap,
    ops_by_world,
    scenario,
)
from mwsim.timing import RuntimeModel


def test_worker_crash_in_four_world_fan_in(replay):
    _, history = replay(
        scenario(
            """
            topology: {generator: fan_in, workers: 4}
            duration_s: 5
            events: [{at: 2.0, do: crash, target: w2}]
            """
        )
    )
    (crash,) = faults(history, "crash")
    assert crash["confirmed"] is True and crash["target"] == "w2"
    ops = ops_by_world(history)
    for world in ("world1", "world3", "world4"):
        times = [e.t for e in ops[world]]
        assert largest_gap(times, 0.5, 5.0) < 2.0, world
        assert all(e["ok"] for e in ops[world])
        assert {e["peer"] for e in ops[world]} == {world.replace("world", "w")}
    reports = broken_reports(history)
    assert set(reports) == {"world2"}
    assert 2.0 <= reports["world2"]["leader"] < 3.0
    assert max(e.t for e in ops["world2"]) < reports["world2"]["leader"]
    exits = {e["worker"]: e["code"] for e in history.of_kind("exit")}
    assert exits["w2"] == -9


def test_hang_is_flagged_by_the_watchdog_and_resumes(replay):
    _, history = replay(
        scenario(
            """
            topology: {generator: fan_in, workers: 2}
            duration_s: 11
            events: [{at: 1.0, do: hang, target: w2, for_s: 8.5}]
            """
        )
    )
    (hang,) = faults(history, "hang")
    assert hang["confirmed"] is True
    (resumed,) = history.of_kind("resumed")
    assert resumed["confirmed"] is True and 9.4 < resumed.t < 10.0
    # the watchdog checks every 3 s; the hang outlasts the model's whole window
    latency = broken_reports(history)["world2"]["leader"] - in_force(hang)
    assert 2.5 < latency < RuntimeModel().watchdog_window()[1], latency
    world1 = [e.t for e in ops_by_world(history)["world1"]]
    assert largest_gap(world1, 0.5, 11.0) < 2.0


def test_graceful_leave(replay):
    _, history = replay(
        scenario(
            """
            topology: {generator: fan_in, workers: 2}
            duration_s: 4
            events: [{at: 1.5, do: leave, target: w1}]
            """
        )
    )
    (leave,) = faults(history, "leave")
    assert leave["confirmed"] is True
    assert [(e["world"], e["worker"]) for e in history.of_kind("left")] == [("world1", "w1")]
    exits = {e["worker"]: e for e in history.of_kind("exit")}
    assert exits["w1"]["code"] == 0 and exits["w1"].t < 2.5
    assert "leader" in broken_reports(history)["world1"]
    assert largest_gap([e.t for e in ops_by_world(history)["world2"]], 0.5, 4.0) < 2.0


def test_leader_crash_is_reported_by_every_worker(replay):
    _, history = replay(
        scenario(
            """
            topology: {generator: fan_in, workers: 3}
            duration_s: 4
            events: [{at: 1.5, do: crash, target: leader}]
            """
        )
    )
    assert faults(history, "crash")[0]["confirmed"] is True
    reports = broken_reports(history)
    for i in (1, 2, 3):
        assert f"w{i}" in reports[f"world{i}"]
        assert reports[f"world{i}"][f"w{i}"] - 1.5 < 1.0


def test_online_join_while_others_run(replay):
    _, history = replay(
        scenario(
            """
            topology: {generator: fan_in, workers: 2}
            duration_s: 9
            events: [{at: 1.0, do: join, worker: w3, worlds: {world3: [leader, w3]}}]
            """
        )
    )
    joined = {(e["world"], e["worker"]): e.t for e in history.of_kind("joined")}
    assert 1.0 < joined[("world3", "w3")] < 9.0
    ops = ops_by_world(history)
    first = min(e.t for e in ops["world3"])
    assert joined[("world3", "leader")] <= first < joined[("world3", "leader")] + 1.0
    for world in ("world1", "world2"):
        assert largest_gap([e.t for e in ops[world]], 0.5, 9.0) < 2.0
    assert not broken_reports(history)


def test_add_world_then_remove_it(replay):
    _, history = replay(
        scenario(
            """
            topology: {generator: fan_in, workers: 2}
            duration_s: 5
            events:
              - {at: 1.0, do: add_world, world: x1, members: [w1, w2]}
              - {at: 3.0, do: remove_world, world: x1}
            """
        )
    )
    x1 = [e for e in ops_by_world(history)["x1"]]
    assert x1 and all(1.0 < e.t < 3.2 and e["ok"] and e["worker"] == "w1" for e in x1)
    assert [e["seq"] for e in x1] == list(range(len(x1)))  # in order, no gap, no duplicate
    left = {e["worker"]: e.t for e in history.of_kind("left")}
    assert set(left) == {"w1", "w2"} and all(3.0 <= t < 4.0 for t in left.values())
    assert not broken_reports(history)
    for world in ("world1", "world2"):
        assert largest_gap([e.t for e in ops_by_world(history)[world]], 0.5, 5.0) < 2.0


def test_allreduce_world_losing_a_member(replay):
    _, history = replay(
        scenario(
            """
            topology:
              generator: explicit
              hosts: {h0: {}}
              workers: {a: {host: h0}, b: {host: h0}, c: {host: h0}, d: {host: h0}}
              worlds: {trio: [a, b, c], pair: [c, d]}
            workload: {kind: allreduce, interval_ms: 20}
            duration_s: 9
            events: [{at: 1.5, do: crash, target: b}]
            """
        )
    )
    assert faults(history, "crash")[0]["confirmed"] is True
    ops = ops_by_world(history)
    before = [e for e in ops["trio"] if e.t < 1.5]
    assert before and all(e["ok"] for e in before)
    assert {e["worker"] for e in before} == {"a", "b", "c"}
    reports = broken_reports(history)
    assert set(reports) == {"trio"} and set(reports["trio"]) == {"a", "c"}
    assert all(e["ok"] for e in ops["pair"])
    assert largest_gap([e.t for e in ops["pair"]], 0.5, 9.0) < 2.0
    # upstream finding: between the crash and the watchdog, survivors' all-reduces
    # return instead of raising, with sums that miss b's part
    after = [e for e in ops["trio"] if e.t > 1.6]
    assert after and not any(e["ok"] for e in after)


def test_crash_host_takes_every_worker_on_it(replay):
    _, history = replay(
        scenario(
            """
            topology: {generator: fan_in, workers: 3, hosts: 2}
            duration_s: 4
            events: [{at: 1.5, do: crash_host, target: h1}]
            """
        )
    )
    (fault,) = faults(history, "crash_host")
    assert fault["confirmed"] is True and fault["workers"] == ["w1", "w3"]
    exits = {e["worker"]: e["code"] for e in history.of_kind("exit") if e.t < 3.0}
    assert exits == {"w1": -9, "w3": -9}
    assert set(broken_reports(history)) == {"world1", "world3"}
    assert largest_gap([e.t for e in ops_by_world(history)["world2"]], 0.5, 4.0) < 2.0
