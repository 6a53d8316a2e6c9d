"""Scenario model: defaults, the library, dump/parse round trip."""

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mwsim import ProblemError, dump_scenario, load_scenario, parse_scenario
from mwsim.events import Crash, Hang, Join, Kind
from mwsim.scenario import FanInSpec, PipelineSpec

LIBRARY = sorted(Path(__file__).parents[2].joinpath("scenarios").rglob("*.yaml"))

MINIMAL = "mwsim: 1\nname: tiny\ntopology: {generator: fan_in, workers: 2}\n"


def test_minimal_scenario_gets_documented_defaults():
    s = parse_scenario(MINIMAL)
    assert s.runtime == "multiworld" and s.backend == "gloo"
    assert (s.workload.kind, s.workload.tensor_bytes, s.workload.interval_ms) == (
        "stream",
        4096,
        20,
    )
    assert s.duration_s == 10.0
    assert s.events == [] and s.expect.violations == []
    assert isinstance(s.topology, FanInSpec) and s.topology.hosts == 1


def test_library_has_every_shape_and_event_kind():
    assert len(LIBRARY) >= 12
    scenarios = [load_scenario(p) for p in LIBRARY]
    assert len({s.name for s in scenarios}) == len(scenarios), "names must be unique"
    generators = {s.topology.generator for s in scenarios}
    assert generators == {"fan_in", "pipeline", "explicit"}
    kinds = {e.do for s in scenarios for e in s.events}
    assert kinds == set(Kind)
    assert {s.workload.kind for s in scenarios} == {"stream", "request", "allreduce", "serve"}
    assert any(s.expect.violations for s in scenarios), "a negative control is in the library"


@pytest.mark.parametrize("path", LIBRARY, ids=[p.stem for p in LIBRARY])
def test_library_file_round_trips_through_dump(path):
    scenario = load_scenario(path)
    assert parse_scenario(dump_scenario(scenario), "dumped") == scenario


def test_events_are_typed_and_ordered_by_time_then_file_order():
    s = parse_scenario(
        MINIMAL
        + "duration_s: 9\nevents:\n"
        + "  - {at: 5.0, do: crash, target: w1}\n"
        + "  - {at: 2.0, do: hang, target: w2, for_s: 1.5}\n"
        + "  - {at: 5.0, do: join, worker: w3, worlds: {world3: [leader, w3]}}\n"
    )
    ordered = s.ordered_events()
    assert [i for i, _ in ordered] == [1, 0, 2]
    assert isinstance(ordered[0][1], Hang) and ordered[0][1].for_s == 1.5
    assert isinstance(ordered[1][1], Crash)
    assert isinstance(ordered[2][1], Join) and ordered[2][1].worlds == {"world3": ["leader", "w3"]}


def test_pipeline_stage_forms():
    counted = parse_scenario(
        "mwsim: 1\nname: p\ntopology: {generator: pipeline, stages: 3, replicas: 2}\n"
    )
    listed = parse_scenario(
        "mwsim: 1\nname: p\ntopology: {generator: pipeline, stages: [2, 2, 2]}\n"
    )
    assert isinstance(counted.topology, PipelineSpec)
    assert counted.topology.replica_counts() == listed.topology.replica_counts() == [2, 2, 2]
    assert counted.build_topology().worlds() == listed.build_topology().worlds()


def test_world_name_can_be_used_again_once_its_world_is_gone():
    s = parse_scenario(
        MINIMAL
        + "events:\n"
        + "  - {at: 1.0, do: leave, target: w1}\n"
        + "  - {at: 2.0, do: join, worker: w1, worlds: {world1: [leader, w1]}}\n"
    )
    assert len(s.events) == 2
    with pytest.raises(ProblemError, match="already exists"):
        parse_scenario(
            MINIMAL
            + "events:\n  - {at: 2.0, do: join, worker: w9, worlds: {world1: [leader, w9]}}\n"
        )


@settings(deadline=None)  # a shared CI machine has no steady speed
@given(
    workers=st.integers(1, 6),
    crash_at=st.floats(0, 9, allow_nan=False),
    hang_for=st.none() | st.floats(0.1, 5, allow_nan=False),
)
def test_dump_parse_round_trip_for_drawn_scenarios(workers, crash_at, hang_for):
    hang = {"at": 0.5, "do": "hang", "target": "leader"}
    if hang_for is not None:
        hang["for_s"] = hang_for
    data = {
        "mwsim": 1,
        "name": "drawn",
        "topology": {"generator": "fan_in", "workers": workers},
        "events": [{"at": crash_at, "do": "crash", "target": "w1"}, hang],
    }
    scenario = parse_scenario(yaml.safe_dump(data))
    assert parse_scenario(dump_scenario(scenario)) == scenario
