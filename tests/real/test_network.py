"""Network faults on emulated hosts, on real processes, judged on the recorded history.

Each host of the topology is its own network namespace; partitions, degraded links and
power loss are applied in the kernel. Skipped, with the reason, where this machine cannot
make network namespaces (not root, tools missing).
"""

from __future__ import annotations

import statistics

import pytest

from mwsim.hosts import emulated
from mwsim.sim import simulate
from mwsim.testing import broken_reports, faults, in_force, largest_gap, ops_by_world, scenario

reason = emulated.unavailable()
if reason:
    pytest.skip(f"emulated hosts are not possible here: {reason}", allow_module_level=True)

#: An op completing before a cut may be stamped a little later (its thread's turn).
STAMP_S = 0.05

#: leader and w3 on h0, w1 on h1, w2 on h2 (dealt round-robin)
FAN_IN = "topology: {generator: fan_in, workers: 3, hosts: 3}\n"


def fan_in(events: str, duration: float, workload: str = "stream") -> object:
    return scenario(
        FAN_IN + f"workload: {{kind: {workload}}}\nduration_s: {duration}\nevents:\n{events}"
    )


def times(history, world):
    return [e.t for e in ops_by_world(history).get(world, [])]


def test_the_run_line_records_the_emulated_network(replay):
    _, history = replay(fan_in("  - {at: 1.0, do: crash, target: w2}\n", 3))
    network = history.meta["network"]
    assert network["kind"] == "emulated" and network["subnet"] == "198.18.0.0/15"
    assert set(network["hosts"]) == {"h0", "h1", "h2"}
    assert all(h["address"].startswith("198.18.") for h in network["hosts"].values())


def test_a_silent_partition_breaks_only_the_cut_world_inside_the_model_window(replay):
    s = fan_in("  - {at: 2.0, do: partition, groups: [[h0], [h1]]}\n", 10)
    _, history = replay(s)
    (fault,) = faults(history, "partition")
    assert fault["confirmed"] is True and fault["mode"] == "drop"
    reports = broken_reports(history)
    assert set(reports) == {"world1"}  # no false alarm on world2, world3
    (predicted,) = [e for e in simulate(s).of_kind("broken") if e["worker"] == "leader"]
    lo, hi = predicted["window"]
    assert lo - 0.1 <= reports["world1"]["leader"] <= hi + 0.1
    assert reports["world1"]["leader"] - 2.0 > 2.0  # seconds: only the watchdog can see it
    for world in ("world2", "world3"):
        assert largest_gap(times(history, world), 0.5, 10.0) < 2.0, world


def test_a_resetting_partition_is_seen_about_as_fast_as_a_crash(replay):
    _, history = replay(
        fan_in("  - {at: 2.0, do: partition, groups: [[h0], [h1]], mode: reset}\n", 4)
    )
    (fault,) = faults(history, "partition")
    assert fault["confirmed"] is True
    reports = broken_reports(history)
    assert set(reports) == {"world1"}
    seen = {w: t - in_force(fault) for w, t in reports["world1"].items()}
    assert seen["leader"] < 1.0 and seen["w1"] < 1.0, seen
    assert largest_gap(times(history, "world2"), 0.5, 4.0) < 2.0


def test_a_one_second_partition_is_survived_and_the_world_recovers(replay):
    _, history = replay(
        fan_in("  - {at: 2.0, do: partition, groups: [[h0], [h1]], for_s: 1.0}\n", 6)
    )
    (fault,) = faults(history, "partition")
    (healed,) = history.of_kind("resumed")
    assert healed["do"] == "partition" and healed["confirmed"] is True and 2.95 < healed.t < 3.5
    assert not broken_reports(history)
    world1 = times(history, "world1")
    crossed = [t for t in world1 if in_force(fault) + STAMP_S < t < healed.t]
    assert not crossed, (in_force(fault), crossed)  # nothing crossed the cut
    assert min(t for t in world1 if t > healed.t) - healed.t < 2.0  # recovery
    assert all(e["ok"] for e in ops_by_world(history)["world1"])


def test_a_one_way_partition_cuts_the_world_across_it(replay):
    _, history = replay(fan_in("  - {at: 2.0, do: partition, from: [h1], to: [h0]}\n", 9))
    (fault,) = faults(history, "partition")
    assert fault["confirmed"] is True and fault["from"] == ["h1"] and fault["to"] == ["h0"]
    assert set(broken_reports(history)) == {"world1"}
    assert max(times(history, "world1")) < in_force(fault) + STAMP_S
    assert largest_gap(times(history, "world2"), 0.5, 9.0) < 2.0


def _delay_seen(replay) -> str | None:
    """Replay a 50 ms delay on h1 (world1 crosses it, world2 does not); what is wrong with
    the latencies seen, if anything. Confirmation and breakage are asserted outright."""
    events = "  - {at: 2.0, do: degrade, target: h1, delay_ms: 50, for_s: 4}\n"
    _, history = replay(fan_in(events, 10, workload="request"))
    (fault,) = faults(history, "degrade")
    assert fault["confirmed"] is True and fault["delay_ms"] == 50
    (repaired,) = history.of_kind("resumed")
    assert repaired["confirmed"] is True  # the delay was lifted (checked in the kernel)
    assert not broken_reports(history)
    ops = ops_by_world(history)
    assert any(e.t > in_force(repaired) and e["ok"] for e in ops["world1"])  # still serving

    def latency(world, a, b):
        return statistics.median(e["latency_s"] for e in ops[world] if a <= e.t < b)

    start, end = in_force(fault) + 0.2, repaired.t
    assert end - start > 1.0, (start, end)
    during = {w: latency(w, start, end) for w in ("world1", "world2")}
    # a world's undisturbed latency: the quieter of before and after the delay
    quiet = {
        w: min(latency(w, 0.5, 2.0), latency(w, in_force(repaired) + 1.0, 10.0))
        for w in ("world1", "world2")
    }
    if not 0.010 < during["world1"] - quiet["world1"] < 0.075:
        return f"world1 (across the delay): {during=} {quiet=}"
    if during["world2"] - quiet["world2"] >= 0.015:
        return f"world2 (not on h1) slowed: {during=} {quiet=}"
    return None


def test_a_50_ms_delay_raises_op_latency_and_breaks_nothing(replay):
    """While the delay is in force ops of the delayed host's world take 10 to 75 ms longer
    and the other worlds' do not; it is lifted, and nothing broke. (Ops rise by 20 to 60
    ms, some not at all; ``bench/hosts.py`` measures the knob itself.) This machine now
    and then stalls every process for seconds (seen in CI: every world at a tenth of its
    rate, 0.3-0.8 s per op, before the delay began), so a latency verdict must be seen
    in two replays running to fail; confirmation and breakage fail at once."""
    seen = []
    for _ in range(2):
        problem = _delay_seen(replay)
        if problem is None:
            return
        seen.append(problem)
    pytest.fail("; ".join(seen))


def test_ten_percent_loss_breaks_nothing_and_loses_no_data(replay):
    _, history = replay(
        fan_in("  - {at: 1.0, do: degrade, target: h1, loss_pct: 10, for_s: 5}\n", 7)
    )
    (fault,) = faults(history, "degrade")
    assert fault["confirmed"] is True, fault
    assert not broken_reports(history), broken_reports(history)
    world1 = ops_by_world(history)["world1"]
    assert all(e["ok"] for e in world1)
    seqs = [e["seq"] for e in world1]
    assert seqs == list(range(len(world1))), seqs  # in order, none lost
    (repaired,) = history.of_kind("resumed")
    during = [e.t for e in world1 if in_force(fault) < e.t < repaired.t]
    # it kept serving, slower: each lost segment waits for TCP's timeout (>= 200 ms)
    assert len(during) > 10 and largest_gap(during, in_force(fault), repaired.t) < 3.0, during


def test_power_off_is_seen_only_by_the_watchdog_where_a_host_crash_is_seen_at_once(replay):
    _, powered = replay(fan_in("  - {at: 2.0, do: power_off, target: h1}\n", 10))
    _, crashed = replay(fan_in("  - {at: 2.0, do: crash_host, target: h1}\n", 4))
    (off,) = faults(powered, "power_off")
    assert off["confirmed"] is True and off["workers"] == ["w1"]
    assert {e["worker"]: e["code"] for e in powered.of_kind("exit") if e.t < 5} == {"w1": -9}
    silent = broken_reports(powered)["world1"]["leader"] - in_force(off)
    loud = broken_reports(crashed)["world1"]["leader"] - in_force(faults(crashed)[0])
    assert silent > 2.0 and loud < 0.5, (silent, loud)
    assert set(broken_reports(powered)) == {"world1"}


def test_power_off_of_the_leaders_host_is_never_reported_upstream_finding_7(replay):
    _, history = replay(fan_in("  - {at: 2.0, do: power_off, target: h0}\n", 10))
    (off,) = faults(history, "power_off")
    assert off["confirmed"] is True and off["workers"] == ["leader", "w3"]
    exits = {e["worker"]: e["code"] for e in history.of_kind("exit") if e.t < 9}
    assert exits == {"leader": -9, "w3": -9}
    # upstream MultiWorld 0.2.3: w1 and w2 lost their worlds' store host in silence and
    # never notice (a correct runtime would, within the watchdog window)
    assert not broken_reports(history)
