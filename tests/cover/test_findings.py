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
    return s.timeline()


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
