"""``mwsim bench`` for real: upstream MultiWorld against the torch baseline (one process
group) on the same fault-free workload, runs alternating, figures in a table, JSON and a
plot, and nothing left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from PIL import Image

from mwsim.testing import TAG, tagged_processes

BENCH = """\
mwsim: 1
name: bench-pair
topology: {generator: fan_in, workers: 2}
workload: {kind: stream, interval_ms: 5}
duration_s: 2.5
"""


def test_bench_compares_multiworld_with_the_torch_baseline_side_by_side(tmp_path):
    path, report = tmp_path / "bench.yaml", tmp_path / "bench.json"
    path.write_text(BENCH)
    tag = uuid.uuid4().hex
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mwsim.cli",
            "bench",
            str(path),
            "--runtime",
            "multiworld",
            "--baseline",
            "torch",
            "--repeat",
            "2",
            "--warmup",
            "0.5",
            "--out",
            str(tmp_path / "out"),
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, TAG: tag, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "multiworld vs torch" in done.stdout and "loss" in done.stdout
    data = json.loads(report.read_text())
    runs = [(s["runtime"], s["repeat"]) for s in data["samples"]]
    assert runs == [("multiworld", 0), ("torch", 0), ("torch", 1), ("multiworld", 1)]
    for sample in data["samples"]:
        assert sample["verdict"] == "pass", sample
        rates = {w["world"]: w["ops_per_s"] for w in sample["worlds"]}
        assert set(rates) == {"world1", "world2", "all"} and min(rates.values()) > 0, rates
        assert rates["all"] == pytest.approx(rates["world1"] + rates["world2"])
    (total,) = [r for r in data["rows"] if r["world"] == "all"]
    ours, theirs = total["ops_per_s"]["multiworld"], total["ops_per_s"]["torch"]
    assert ours["low"] <= ours["median"] <= ours["high"] and theirs["median"] > 0
    assert total["throughput_loss_pct"] == round((1 - ours["median"] / theirs["median"]) * 100, 2)
    assert Image.open(tmp_path / "out" / "bench-pair" / "bench.png").size[0] > 400
    assert not tagged_processes(tag)
