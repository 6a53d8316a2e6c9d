"""Model fuzz: for any drawn scenario the simulated history satisfies every property."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mwsim.checks import check, judge
from mwsim.events import Kind
from mwsim.findings import known_finding
from mwsim.fuzz import Violation, check_model
from mwsim.generate import FAMILIES, generate
from mwsim.scenario import dump_scenario, load_scenario, parse_scenario, plan_problems
from mwsim.sim import MODELS, simulate
from mwsim.strategies import FUZZ_KINDS, scenarios


@given(scenarios())
def test_drawn_scenarios_are_valid_and_round_trip(scenario):
    assert plan_problems(scenario) == []
    again = parse_scenario(dump_scenario(scenario), "<dumped>")
    assert again == scenario


@settings(max_examples=5 * settings.default.max_examples)
@given(scenarios(), st.integers(0, 2**32 - 1))
def test_simulated_histories_satisfy_every_property(tmp_path_factory, scenario, seed):
    check_model(scenario.model_copy(update={"seed": seed}), tmp_path_factory.mktemp("model"))


@settings(max_examples=50)
@given(scenarios())
def test_simulation_is_deterministic(scenario):
    assert simulate(scenario).to_jsonl() == simulate(scenario).to_jsonl()


@given(scenarios(kinds=FUZZ_KINDS, avoid_known=True))
def test_avoid_known_draws_no_known_finding(scenario):
    timeline = scenario.membership()
    workload = scenario.workload.kind
    for _, event in scenario.ordered_events():
        assert known_finding(timeline, event.model_dump(), event.at, workload) is None
        assert timeline.try_apply(event)


def test_model_fuzzing_finds_a_planted_model_bug_and_writes_a_reproducer(tmp_path):
    """A model whose watchdog checks ten times too rarely misses the detection bounds; the
    fuzzer must find a scenario showing it, shrink it, and write it where it replays."""
    slow_watchdog = replace(MODELS["multiworld"], check_every=100)

    @settings(max_examples=300)
    @given(scenarios(kinds=(Kind.HANG, Kind.CRASH, Kind.JOIN)))
    def fuzz(scenario):
        check_model(scenario, tmp_path, model=slow_watchdog)

    with pytest.raises(Violation) as found:
        fuzz()
    violation = found.value
    assert any(v.name == "detection" and v.verdict == "fail" for v in violation.verdicts)
    assert [e.do for e in violation.scenario.events] == ["hang"]  # shrunk to the one cause
    written = load_scenario(violation.path)
    with pytest.raises(Violation):
        check_model(written, tmp_path / "again", model=slow_watchdog)
    check_model(written, tmp_path / "correct")  # the correct model passes it


#: Deployment sizes ``mwsim generate --workers`` is used at, up to the README's largest.
SIZES = (1, 7, 32, 33, 256, 1024, 2048, 4096)


@settings(max_examples=16, deadline=None)
@example(family="mtbf", workers=4096, seed=0)
@example(family="spot", workers=4096, seed=0)
@example(family="partitions", workers=4096, seed=0)
@given(
    family=st.sampled_from(sorted(FAMILIES)),
    workers=st.sampled_from(SIZES),
    seed=st.integers(0, 2**31),
)
def test_what_generate_writes_passes_on_the_model_at_every_size(family, workers, seed):
    """A model of a correct runtime passes its own checks on every generated scenario,
    whatever the family and the deployment's size (agents poll less often in big ones)."""
    data = generate(family, seed, workers=workers, duration_s=300.0)
    s = parse_scenario(yaml.safe_dump(data, sort_keys=False), f"<{family}-{workers}-{seed}>")
    overall, verdicts = judge(check(simulate(s), s), set())
    assert overall == "pass", [(v.name, v.detail) for v in verdicts if v.verdict != "pass"]
