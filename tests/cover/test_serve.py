"""The serve workload on the model, and the request properties: the scenario keys, the
arrival processes, served / slo / goodput on model histories and on histories with a
lost request, a duplicated answer, a wrong answer, a late phase and a stalled fault
planted into them."""

from __future__ import annotations

import itertools
import random
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from mwsim import checks
from mwsim.errors import ProblemError
from mwsim.history import Admitted, Answered, History, Unserved
from mwsim.scenario import Workload
from mwsim.sim import simulate
from mwsim.sim.serving import arrivals
from mwsim.testing import scenario

FANIN = """
topology: {generator: fan_in, workers: 4}
workload: {kind: serve, rate_per_s: 40, timeout_ms: 2000}
duration_s: 12
events:
  - {at: 4.0, do: crash, target: w2}
expect:
  slo: {latency_ms: 250, attainment: 0.95}
"""

PIPELINE = """
topology: {generator: pipeline, stages: [2, 2, 2]}
workload: {kind: serve, rate_per_s: 30, model: {layers: 2, width: 32}}
duration_s: 12
events:
  - {at: 4.0, do: crash, target: s1r0}
expect:
  slo: {latency_ms: 250, attainment: 0.9}
"""


def verdicts(history: History, text: str) -> dict[str, checks.Verdict]:
    return {v.name: v for v in checks.check(history, scenario(text))}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("workload: {kind: stream, rate_per_s: 5}", "rate_per_s is for kind: serve"),
        ("workload: {kind: serve, arrivals: poisson, cv: 2}", "cv shapes bursty arrivals"),
        ("workload: {kind: serve, interval_ms: 5}", "interval_ms is not read by kind: serve"),
        ("expect: {slo: {latency_ms: 100, attainment: 0.9}}", "slo judges the requests of"),
        ("workload: {kind: serve, route: random}", "route"),
        (
            "workload: {kind: serve}\nexpect: {slo: {latency_ms: 100, attainment: 1.5}}",
            "attainment",
        ),
    ],
)
def test_serve_keys_are_checked_where_they_are_written(text, problem):
    with pytest.raises(ProblemError) as caught:
        scenario(f"topology: {{generator: fan_in, workers: 2}}\n{text}\n").plan  # noqa: B018
    assert problem in str(caught.value)


def test_serve_needs_a_frontend_and_replicas():
    text = (
        "topology: {generator: explicit, hosts: {h0: {}}, workers: {leader: {host: h0}, "
        "a: {host: h0}}, worlds: {wa: [leader, a]}}\nworkload: {kind: serve}\n"
    )
    with pytest.raises(ProblemError, match="serve needs a fan_in or pipeline topology"):
        scenario(text).plan  # noqa: B018


def test_arrivals_have_the_rate_and_the_spread_asked_for():
    def gaps(**kw: object) -> list[float]:
        times = list(arrivals(Workload(kind="serve", **kw), 2000.0, random.Random(1)))
        return [b - a for a, b in itertools.pairwise(times)]

    constant = gaps(rate_per_s=10, arrivals="constant")
    assert max(constant) - min(constant) < 1e-9 and abs(constant[0] - 0.1) < 1e-9
    for kind, cv in (("poisson", 1.0), ("bursty", 3.0)):
        got = gaps(rate_per_s=10, arrivals=kind, cv=3.0)
        mean = statistics.fmean(got)
        assert abs(mean - 0.1) < 0.01, (kind, mean)
        assert abs(statistics.pstdev(got) / mean - cv) < 0.25 * cv, kind


@pytest.mark.parametrize("text", [FANIN, PIPELINE], ids=["fan_in", "pipeline"])
def test_the_model_serves_through_a_crash_and_passes_its_own_checks(text):
    history = simulate(scenario(text))
    got = verdicts(history, text)
    assert all(v.verdict == "pass" for v in got.values()), [
        (v.name, v.detail) for v in got.values() if v.verdict != "pass"
    ]
    requests, answers = history.of(Admitted), history.of(Answered)
    assert len(requests) > 300 and len(answers) == len(requests) - len(history.of(Unserved))
    assert "before" in got["slo"].detail and "during" in got["slo"].detail
    stages = 3 if "pipeline" in text else 1
    assert all(len(a.path) == stages for a in answers)
    assert "w2" not in {a.path[0] for a in answers if a.t > 4.1}  # routed around the crash
    assert simulate(scenario(text)).to_jsonl() == history.to_jsonl()  # deterministic


def _planted(change) -> dict[str, checks.Verdict]:
    history = simulate(scenario(FANIN))
    return verdicts(History(change(list(history))), FANIN)


def test_a_lost_request_fails_served():
    def lose(records):
        gone = next(r for r in records if isinstance(r, Answered) and r.t > 5)
        return [r for r in records if r is not gone]

    served = _planted(lose)["served"]
    assert served.verdict == "fail" and "was neither answered nor failed" in served.detail


def test_a_duplicated_answer_fails_served():
    def twice(records):
        answer = next(r for r in records if isinstance(r, Answered) and r.t > 5)
        return [*records, replace(answer, t=answer.t + 0.01)]

    served = _planted(twice)["served"]
    assert served.verdict == "fail" and "ended 2 times" in served.detail


def test_a_wrong_answer_fails_served():
    def wrong(records):
        return [
            replace(r, right=False) if isinstance(r, Answered) and r.rid == 7 else r
            for r in records
        ]

    served = _planted(wrong)["served"]
    assert served.verdict == "fail" and "request 7 was answered" in served.detail
    assert "wrong output" in served.detail


def test_a_late_phase_fails_the_slo_of_that_phase_only():
    def late(records):
        return [
            replace(r, latency_s=0.9) if isinstance(r, Answered) and r.t > 7 else r for r in records
        ]

    slo = _planted(late)["slo"]
    assert slo.verdict == "fail" and slo.detail.startswith("after (")
    assert len(slo.problems) == 0  # one phase: one problem


def test_requests_failed_while_replicas_were_untouched_fail_served_and_goodput():
    def stall(records):  # after the crash, the frontend fails everything: it stopped serving
        out = []
        for r in records:
            if isinstance(r, Answered) and r.t > 4.5:
                r = Unserved.of(r.t, rid=r.rid, worker=r.worker, reason="timeout", tries=1)
            out.append(r)
        return out

    got = _planted(stall)
    assert got["served"].verdict == "fail"
    assert "though the path through w1 was untouched" in got["served"].detail
    assert got["goodput"].verdict == "fail"
    assert "should answer at least 56%" in got["goodput"].detail


def test_request_properties_judge_only_the_serve_workload():
    stream = "topology: {generator: fan_in, workers: 2}\nduration_s: 4\n"
    names = [v.name for v in checks.check(simulate(scenario(stream)), scenario(stream))]
    assert not {"served", "slo", "goodput"} & set(names)
    names = [v.name for v in checks.check(simulate(scenario(FANIN)), scenario(FANIN))]
    assert names[-3:] == ["served", "slo", "goodput"]


def test_what_a_fault_cost_is_priced_by_the_model_with_and_without_it():
    from mwsim.whatif import fault_costs

    hang = scenario(
        "topology: {generator: fan_in, workers: 4}\n"
        "workload: {kind: serve, rate_per_s: 40, route: least_outstanding}\nduration_s: 14\n"
        "events:\n  - {at: 4.0, do: hang, target: w1, for_s: 6}\n"
        "  - {at: 5.0, do: join, worker: w5, worlds: {world5: [leader, w5]}}\n"
        "  - {at: 6.0, do: crash, target: w5}\n"
        "expect: {slo: {latency_ms: 250, attainment: 0.5}}\n"
    )
    costs = {c.event: c for c in fault_costs(hang)}
    assert set(costs) == {0, 2}  # the faults, not the join
    assert costs[0].late > 0 and costs[0].failed == 0  # requests stuck on w1 until retried
    assert costs[0].line().startswith("hang of w1 at 4.00 s: 0 failed, ")
    assert not costs[2].note  # the crash can be removed; the join could not
    assert fault_costs(scenario("topology: {generator: fan_in, workers: 2}\n")) == []


def test_conformance_compares_the_requests_of_each_phase_with_the_models():
    from mwsim.checks import conformance_of, facts

    s = scenario(FANIN)
    predicted = simulate(s)
    same = conformance_of(facts(predicted, s), facts(predicted, s))
    assert same.verdict == "pass" and "during: 100% answered, p50 " in same.detail
    slow = History(
        [
            replace(r, latency_s=r.latency_s * 20) if isinstance(r, Answered) else r
            for r in predicted
        ]
    )
    got = conformance_of(facts(slow, s), facts(predicted, s))
    assert got.verdict == "fail" and "median latency" in got.detail
    lossy = History(
        [
            Unserved.of(r.t, rid=r.rid, worker=r.worker, reason="timeout", tries=1)
            if isinstance(r, Answered) and r.rid % 4 == 0
            else r
            for r in predicted
        ]
    )
    got = conformance_of(facts(lossy, s), facts(predicted, s))
    assert got.verdict == "fail" and "of the requests answered, the model 100%" in got.detail


def test_a_workload_dumps_only_the_keys_of_its_kind_and_parses_back():
    from mwsim.runs import with_overrides
    from mwsim.scenario import dump_scenario, parse_scenario

    stream = scenario("topology: {generator: fan_in, workers: 2}\nduration_s: 4\n")
    assert set(stream.workload.model_dump()) == {"kind", "tensor_bytes", "interval_ms"}
    serve = scenario(FANIN)
    assert "interval_ms" not in serve.workload.model_dump()
    assert "cv" not in serve.workload.model_dump()  # only bursty arrivals read it
    for s in (stream, serve, scenario(PIPELINE)):
        assert parse_scenario(dump_scenario(s)) == s
        assert with_overrides(s, runtime="torch").runtime == "torch"
    # a stream scenario's digest is what it was before serving existed, so histories of
    # unchanged scenarios still match (the value mwsim computed at 28d07bf; if this library
    # file is edited, its digest changes on purpose: update the value)
    from mwsim.scenario import load_scenario

    library = load_scenario(Path(__file__).parents[2] / "scenarios" / "fanin-crash-one.yaml")
    assert library.digest() == "077af31869c4f56f"
