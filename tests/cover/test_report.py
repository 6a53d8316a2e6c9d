"""Reports: the JSON report, the timeline PNG, the Perfetto trace, the table."""

import json
from itertools import pairwise
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from PIL import Image
from rich.console import Console

from mwsim import report, timeline, trace
from mwsim.history import History, event
from mwsim.runs import run_scenario
from mwsim.sim import simulate
from mwsim.testing import scenario

ROOT = Path(__file__).parents[2]

S = scenario(
    """
    name: reported
    topology: {generator: fan_in, workers: 3}
    duration_s: 6
    events:
      - {at: 2.0, do: crash, target: w2}
      - {at: 3.0, do: hang, target: w3, for_s: 2}
      - {at: 3.5, do: add_world, world: x, members: [leader, w1]}
    """
)


def test_json_report_has_the_documented_shape(tmp_path):
    outcome = run_scenario(S, mode="sim", out_dir=tmp_path)
    data = report.report_dict(outcome)
    assert data["scenario"] == "reported" and data["mode"] == "sim" and data["verdict"] == "pass"
    names = [p["name"] for p in data["properties"]]
    assert names == [
        "progress",
        "detection",
        "no_false_alarm",
        "integrity",
        "scale_out",
        "hygiene",
        "recovery",
        "survival",
        "errors",
    ]
    assert all(set(p) >= {"name", "verdict", "detail"} for p in data["properties"])
    assert data["broken_worlds"] == ["world2"]
    (d,) = data["detections"]
    assert d["world"] == "world2" and d["worker"] == "leader" and d["fault"] == "crash"
    assert 0 < d["latency_s"] < 1
    assert [r["mode"] for r in data["runs"]] == ["sim"]
    report.write_json([outcome], tmp_path / "r.json")
    # one scenario: its report at the top, and as the one entry of "scenarios"
    assert json.loads((tmp_path / "r.json").read_text()) == {**data, "scenarios": [data]}


def test_artifacts_are_written(tmp_path):
    outcome = run_scenario(S, mode="sim", out_dir=tmp_path)
    paths = report.write_artifacts(outcome)
    with Image.open(paths["timeline"]) as png:
        assert png.format == "PNG" and png.width > 800 and png.height > 200
    trace = json.loads(paths["trace"].read_text())
    names = [e["name"] for e in trace["traceEvents"]]
    assert "fault crash w2" in names and "broken by leader" in names
    assert any(e["ph"] == "C" for e in trace["traceEvents"])
    assert {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"} == {
        "world1",
        "world2",
        "world3",
        "x",
    }
    assert json.loads(paths["report"].read_text())["scenario"] == "reported"


def test_table_shows_each_property_and_evidence(tmp_path):
    outcome = run_scenario(S, mode="sim", out_dir=tmp_path)
    console = Console(record=True, width=160)
    console.print(report.verdict_table(outcome))
    text = console.export_text()
    assert "reported (sim): PASS" in text
    for name in ("progress", "detection", "no_false_alarm", "integrity", "scale_out", "hygiene"):
        assert name in text


def test_op_counts_add_up_to_every_op_of_records_and_spans():
    big = scenario(
        "topology: {generator: fan_in, workers: 2}\nduration_s: 600\n"
        "events: [{at: 100.0, do: crash, target: w2}]\n"
    )
    history = simulate(big, detail="spans")
    spans = history.of_kind("ops")
    assert spans  # a long run is written as spans
    total = sum(e["last"] - e["first"] + 1 for e in spans) + len(history.of_kind("op"))
    bins = timeline.bins_for(big.duration_s)
    counts = dict(timeline.op_counts(history, big.plan, bins))
    assert sum(c.counts.sum() for c in counts.values()) == pytest.approx(total)
    world2 = counts[big.plan.row(big.plan.resolve("world2", None, 0.0).id)].dense(len(bins) - 1)
    assert world2[: len(world2) // 6].sum() > 0 and world2[len(world2) // 5 :].sum() == 0


def test_the_streamed_trace_is_the_trace(tmp_path):
    outcome = run_scenario(S, mode="sim", out_dir=tmp_path)
    path = trace.write_trace(outcome, tmp_path / "t.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(trace.trace_dict(outcome)))
    counters = [e for e in trace.trace_dict(outcome)["traceEvents"] if e["name"] == "ops/s world2"]
    assert counters[0]["args"]["ops"] > 0 and counters[-1]["args"]["ops"] == 0  # it crashed
    assert all(a["args"]["ops"] != b["args"]["ops"] for a, b in pairwise(counters))  # changes


def test_past_max_rows_the_timeline_groups_worlds_by_fate_and_keeps_failing_ones(
    tmp_path, monkeypatch
):
    plan = S.plan
    rows = timeline.layout(plan, failing=set())
    assert rows.labels == ["world1", "world2", "world3", "x"] and not rows.note
    monkeypatch.setattr(timeline, "MAX_ROWS", 2)
    rows = timeline.layout(plan, failing={"world3"})
    assert rows.labels == [
        "1 world: initial, to the end",
        "1 world: initial, ended by crash",
        "1 world: from add_world, to the end",
        "world3",
    ]
    assert rows.labels[-1] == "world3" and rows.alone == {len(rows.labels) - 1}
    assert sum(rows.sizes) == len(plan.worlds) and "4 world incarnations" in rows.note
    monkeypatch.setattr(timeline, "MAX_MARKERS", 1)
    outcome = run_scenario(S, mode="sim", out_dir=tmp_path)
    with Image.open(timeline.timeline_png(outcome, tmp_path / "t.png")) as png:
        assert png.format == "PNG" and png.height > 200


@settings(max_examples=200, deadline=None)
@given(
    t0=st.floats(-5.0, 70.0),
    step=st.floats(0.001, 3.0),
    n=st.integers(2, 400),
    width=st.sampled_from([0.25, 0.3, 1.0, 7.0]),
)
def test_a_spans_ops_land_in_the_bins_its_ops_one_by_one_land_in(t0, step, n, width):
    one = scenario("topology: {generator: fan_in, workers: 1}\nduration_s: 60\n")
    span = event(t0 + (n - 1) * step, "ops", world="world1", worker="w1", first=1, last=n, t0=t0)
    bins = np.arange(0.0, 60.0 + width, width)
    ((_, sparse),) = timeline.op_counts(History([span]), one.plan, bins)
    counts = sparse.dense(len(bins) - 1)
    one_by_one = np.zeros(len(bins) - 1)
    for k in range(n):
        i = int(np.searchsorted(bins, t0 + k * step, side="right")) - 1
        if 0 <= i < len(one_by_one):
            one_by_one[i] += 1
    # an op exactly on an edge may fall either side of it (floating point)
    assert np.abs(np.cumsum(counts) - np.cumsum(one_by_one)).max() <= 1
    assert counts.sum() == pytest.approx(one_by_one.sum(), abs=1)


def test_the_traces_rate_counters_are_the_changes_of_every_bin(tmp_path):
    """Counted only over each life's bins, the counters are what counting over every bin
    gives: a zero at the start, then every change (a world joining late, one crashing)."""
    s = scenario(
        "topology: {generator: fan_in, workers: 3}\nduration_s: 1200\nevents:\n"
        "  - {at: 300.0, do: crash, target: w2}\n"
        "  - {at: 310.0, do: join, worker: w4, worlds: {world4: [leader, w4]}}\n"
    )
    outcome = run_scenario(s, mode="sim", out_dir=tmp_path)
    bins = trace._counter_bins(s.duration_s)
    width, size = float(bins[1] - bins[0]), len(bins) - 1
    labels = [s.plan.label(life) for life in s.plan.worlds]
    origin = trace._origin(outcome)
    wanted = []
    for row, sparse in timeline.op_counts(outcome.runs[0].history, s.plan, bins):
        rates = np.round(sparse.dense(size) / width, 1)
        for i in np.flatnonzero(np.r_[True, rates[1:] != rates[:-1]]):
            ts = round((float(bins[i]) - origin) * 1e6, 1)
            wanted.append((f"ops/s {labels[row]}", ts, rates[i]))
    got = [
        (e["name"], e["ts"], e["args"]["ops"])
        for e in trace.trace_events(outcome, origin)
        if e["ph"] == "C"
    ]
    assert got == wanted
    first_ops = {}
    for name, ts, ops in got:
        if ops > 0:
            first_ops.setdefault(name, ts)
    assert max(first_ops.values()) > 310e6  # the joined world's ops start late


def test_the_legend_names_every_mark_drawn_and_nothing_else(tmp_path):
    hang = scenario(
        "topology: {generator: fan_in, workers: 2}\nduration_s: 12\n"
        "events: [{at: 2.0, do: hang, target: w1, for_s: 8}]\n"
    )
    ok = run_scenario(hang, mode="sim", out_dir=tmp_path / "hang")
    labels = [h.get_label() for h in timeline._legend(ok, ok.runs)]
    assert labels == [
        "op rate (per world, scaled)",
        "hang",
        "a lasting fault in force (shaded in its colour)",
        "reported broken",
        "the model's detection window",
    ]
    late = scenario(
        "topology: {generator: fan_in, workers: 2}\nduration_s: 6\n"
        "events: [{at: 2.0, do: crash, target: w1}]\nexpect: {detect_within_s: {crash: 0.001}}\n"
    )
    failed = run_scenario(late, mode="sim", out_dir=tmp_path / "late")
    labels = [h.get_label() for h in timeline._legend(failed, failed.runs)]
    assert "crash" in labels and "hang" not in labels
    assert labels[-2:] == [
        "a world a violated property names",
        "a bound it broke (due at its tick)",
    ]
    assert timeline.failing_worlds(failed) == {"world1"}
    (detection,) = [v for v in failed.verdicts if v.name == "detection"]
    (bound,) = detection.bounds  # drawn in red on world1's row: the crash to when it was due
    assert bound[0] == "world1" and bound[1] == 2.0 and abs(bound[2] - 2.001) < 1e-9


def test_event_labels_never_overlap_and_those_with_no_room_are_counted():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2))
    ax.set_xlim(0, 10)
    close = [(2.0 + 0.01 * i, f"crash w{i}", "red") for i in range(9)]  # nine at one place
    apart = [(6.0, "join w9", "green"), (9.0, "hang w1", "orange")]
    lanes, left_out = timeline._labels(ax, close + apart)
    assert (lanes, left_out) == (timeline.LABEL_LANES, 9 - timeline.LABEL_LANES)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == len(close) + len(apart) - left_out
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    plt.close(fig)


def test_a_long_run_whose_events_sit_in_a_corner_is_zoomed_there(tmp_path):
    corner = scenario(
        "topology: {generator: fan_in, workers: 4}\nduration_s: 600\n"
        "events: [{at: 10.0, do: crash, target: w1}, {at: 20.0, do: crash, target: w2},\n"
        "         {at: 30.0, do: hang, target: w3, for_s: 2}]\n"
    )
    outcome = run_scenario(corner, mode="sim", out_dir=tmp_path / "corner")
    lo, hi = timeline.focus(outcome)
    assert 0 <= lo < 10 and 30 < hi < 60
    wide = Image.open(timeline.timeline_png(outcome, tmp_path / "corner.png"))
    assert timeline.focus(run_scenario(S, mode="sim", out_dir=tmp_path / "s")) is None
    narrow = Image.open(
        timeline.timeline_png(
            run_scenario(S, mode="sim", out_dir=tmp_path / "s"), tmp_path / "s.png"
        )
    )
    assert wide.size[0] > narrow.size[0]  # the zoom panel beside the whole run


def test_the_table_of_both_runs_says_which_run_its_rows_judge(tmp_path):
    from dataclasses import replace

    from mwsim.history import Mode

    outcome = run_scenario(S, mode="sim", out_dir=tmp_path)
    assert report.verdict_table(outcome).caption is None  # one run: nothing to say
    both = replace(outcome, mode=Mode.BOTH)
    caption = str(report.verdict_table(both).caption)
    assert caption == "the real run's properties; conformance: the real run against the model's"


def test_a_real_violation_that_is_a_known_upstream_finding_is_named_as_it(tmp_path):
    from dataclasses import replace

    from mwsim.history import Mode
    from mwsim.scenario import load_scenario

    hang = load_scenario(ROOT / "scenarios" / "fanin-leader-hang.yaml")
    outcome = run_scenario(hang, mode="sim", out_dir=tmp_path)
    assert outcome.known_findings() == []  # the model's run: nothing upstream did
    # what the real run reports: the violations the scenario expects (the check's own
    # real run is in tests/real/test_cli_real.py)
    as_real = replace(
        outcome,
        runs=[replace(r, mode=Mode.REAL) for r in outcome.runs],
        verdicts=[
            replace(v, verdict="fail") if v.name == "detection" else v for v in outcome.verdicts
        ],
    )
    assert as_real.known_findings() == [2]
    (named,) = report.report_dict(as_real)["known_findings"]
    assert named["finding"] == 2
    assert named["what"].startswith("a hung rank 0 (it hosts the world's store) is never detected")
    assert "runs into known upstream finding 2: a hung rank 0" in str(
        report.verdict_table(as_real).caption
    )
    assert all(v.verdict == "pass" for v in outcome.verdicts)
    calm = replace(as_real, verdicts=outcome.verdicts)  # no violation: nothing to name
    assert calm.known_findings() == []
