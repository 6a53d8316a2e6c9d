"""Reports: the JSON report, the timeline PNG, the Perfetto trace, the table."""

import json

from PIL import Image
from rich.console import Console

from mwsim import report
from mwsim.runs import run_scenario
from mwsim.testing import scenario

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
    ]
    assert all(set(p) >= {"name", "verdict", "detail"} for p in data["properties"])
    assert data["broken_worlds"] == ["world2"]
    (d,) = data["detections"]
    assert d["world"] == "world2" and d["worker"] == "leader" and d["fault"] == "crash"
    assert 0 < d["latency_s"] < 1
    assert [r["mode"] for r in data["runs"]] == ["sim"]
    report.write_json([outcome], tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == data


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
