"""known_finding: which events run into upstream MultiWorld's known findings."""

from pathlib import Path

import pytest

from mwsim.findings import FINDINGS, REPRODUCERS, known_finding
from mwsim.scenario import load_scenario
from mwsim.testing import scenario as inline

ROOT = Path(__file__).resolve().parents[2]


def timeline(workload: str = "stream", workers: int = 3):
    s = inline(f"""
        topology: {{generator: fan_in, workers: {workers}, hosts: 2}}
        workload: {{kind: {workload}}}
        duration_s: 60
    """)
    return s.membership()


@pytest.mark.parametrize(
    ("workload", "fields", "at", "expected"),
    [
        ("allreduce", {"do": "crash", "target": "w1"}, 5.0, 1),
        ("allreduce", {"do": "leave", "target": "w1"}, 5.0, 1),
        ("allreduce", {"do": "crash_host", "target": "h0"}, 5.0, 1),
        ("allreduce", {"do": "hang", "target": "w1"}, 5.0, None),
        ("stream", {"do": "crash", "target": "w1"}, 5.0, None),
        ("stream", {"do": "hang", "target": "leader"}, 5.0, 2),
        ("stream", {"do": "hang", "target": "w2"}, 5.0, None),
        ("stream", {"do": "hang", "target": "w2"}, 0.2, 3),
        ("stream", {"do": "crash", "target": "w2"}, 0.2, 3),
        ("stream", {"do": "crash", "target": "leader"}, 0.2, None),  # rank 0: the store ends
        ("stream", {"do": "slow", "target": "w2", "delay_ms": 50, "for_s": 1}, 0.2, None),
        ("stream", {"do": "crash", "target": "nobody"}, 5.0, None),
    ],
)
def test_known_findings_by_event(workload, fields, at, expected):
    assert known_finding(timeline(workload), fields, at, workload) == expected


def test_a_joined_world_is_young_again():
    tl = timeline()
    join = inline("""
        topology: {generator: fan_in, workers: 1}
        duration_s: 60
        events:
          - {at: 10.0, do: join, worker: j1, worlds: {wj1: [leader, j1]}}
    """).events[0]
    assert tl.try_apply(join)
    assert known_finding(tl, {"do": "crash", "target": "j1"}, 10.3, "stream") == 3
    assert known_finding(tl, {"do": "crash", "target": "j1"}, 12.0, "stream") is None


def test_every_finding_has_a_reproducer_that_expects_violations():
    assert set(REPRODUCERS) == set(FINDINGS)
    for path in REPRODUCERS.values():
        assert load_scenario(ROOT / path).expect.violations


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"do": "partition", "groups": [["h0"], ["h1"]]}, 5),  # w1 cut from the store
        ({"do": "partition", "from": ["h1"], "to": ["h0"]}, 5),
        ({"do": "partition", "groups": [["h0"], ["h1"]], "for_s": 1.0}, None),  # survived
        ({"do": "partition", "groups": [["h0"], ["h1"]], "mode": "reset"}, None),  # seen
        ({"do": "power_off", "target": "h1"}, None),  # a worker's host: the watchdog sees it
        ({"do": "power_off", "target": "h0"}, 7),  # the leader's: the store is lost silently
    ],
)
def test_known_network_findings(fields, expected):
    tl = inline("""
        topology: {generator: fan_in, workers: 3, hosts: 2}
        duration_s: 60
    """).membership()
    assert known_finding(tl, fields, 5.0, "stream") == expected


def test_members_cut_apart_while_both_reach_the_store_is_finding_6():
    tl = inline("""
        topology:
          generator: explicit
          hosts: {h0: {}, h1: {}, h2: {}}
          workers: {a: {host: h0}, b: {host: h1}, c: {host: h2}}
          worlds: {trio: [a, b, c]}
        duration_s: 60
    """).membership()
    assert known_finding(tl, {"do": "partition", "groups": [["h1"], ["h2"]]}, 5.0, "x") == 6
    assert known_finding(tl, {"do": "partition", "groups": [["h0"], ["h2"]]}, 5.0, "x") == 5


def test_a_silent_fault_in_a_world_whose_rank_0_has_many_worlds_is_finding_8():
    hang = {"do": "hang", "target": "w3", "for_s": 5.0}
    assert known_finding(timeline(workers=20), hang, 2.0, "stream") == 8
    assert known_finding(timeline(workers=4), hang, 2.0, "stream") is None
    crash = {"do": "crash", "target": "w3"}  # loud: seen by a failing op, not the watchdog
    assert known_finding(timeline(workers=20), crash, 2.0, "stream") is None
