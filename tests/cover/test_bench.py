"""``mwsim bench``'s figures from histories: what counts as an op in the window, medians
and spreads over repeats, and the sign of the throughput loss."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

from mwsim import bench
from mwsim.cli import main
from mwsim.history import History, event
from mwsim.scenario import Expect


def ops(world: str, times: list[float], latency_s: float, ok: bool = True) -> list:
    return [
        event(t, "op", world=world, worker="leader", seq=i, ok=ok, latency_s=latency_s)
        for i, t in enumerate(times)
    ]


def test_only_intact_ops_inside_the_window_count_and_all_sums_the_worlds():
    history = History(
        ops("world1", [0.5, 1.0, 1.5, 2.0, 2.5, 3.0], 0.002)  # 1.0 .. 2.5 in [1, 3)
        + ops("world2", [1.2, 1.4], 0.010)
        + ops("world2", [1.6], 0.5, ok=False)  # corrupted: not an op served
    )
    w1, w2, total = bench.measure(history, 1.0, 3.0)
    assert (w1.world, w1.ops, w1.ops_per_s, w1.p50_ms) == ("world1", 4, 2.0, 2.0)
    assert (w2.ops, w2.p99_ms) == (2, 10.0)
    assert (total.world, total.ops, total.ops_per_s) == (bench.ALL, 6, 3.0)


def test_rows_give_medians_spreads_and_a_positive_loss_when_the_runtime_is_slower():
    def sample(runtime: str, repeat: int, rate: float) -> bench.Sample:
        w = bench.WorldSample("world1", int(rate * 2), rate, 1.0, 2.0)
        return bench.Sample(runtime, 4096, repeat, "pass", [w])

    samples = [sample("a", r, x) for r, x in enumerate([90.0, 80.0, 100.0])]
    samples += [sample("b", r, x) for r, x in enumerate([100.0, 120.0, 110.0])]
    (row,) = bench.summarise(samples, "a", "b")
    assert row.ops_per_s["a"] == bench.Spread(90.0, 80.0, 100.0)
    assert row.ops_per_s["b"] == bench.Spread(110.0, 100.0, 120.0)
    assert row.throughput_loss_pct == pytest.approx(100 * (1 - 90 / 110), abs=0.01)


def test_a_warm_up_as_long_as_the_run_is_refused_before_anything_starts(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text(
        "mwsim: 1\nname: short\ntopology: {generator: fan_in, workers: 1}\nduration_s: 1\n"
    )
    done = CliRunner().invoke(
        main, ["bench", str(path), "--baseline", "torch", "--out", str(tmp_path / "out")]
    )
    assert done.exit_code == 2
    assert f"{path}:1: duration_s 1.0 leaves nothing after the 1.0 s warm-up" in done.output
    assert not (tmp_path / "out").exists()


def test_the_benchmarked_scenario_keeps_deployment_and_workload_but_no_event_or_expectation():
    from mwsim.testing import scenario

    s = scenario(
        "topology: {generator: fan_in, workers: 2}\n"
        "workload: {kind: request, interval_ms: 7}\nduration_s: 6\n"
        "events: [{at: 1.0, do: crash, target: w1}]\n"
        "expect: {violations: [progress], join_within_s: 3.0}\n"
    )
    quiet = bench.without_faults(s, 65536, interval_ms=0.0)
    assert quiet.events == [] and quiet.expect == Expect()
    assert (quiet.workload.kind, quiet.workload.tensor_bytes) == ("request", 65536)
    assert quiet.workload.interval_ms == 0.0 and quiet.topology == s.topology
    assert bench.without_faults(s).workload == s.workload


def test_the_table_is_never_cut_in_an_80_column_log_and_the_plot_labels_both_axes(tmp_path):
    from rich.console import Console

    def sample(runtime: str, size: int, repeat: int, rate: float) -> bench.Sample:
        w = bench.WorldSample("world1", int(rate * 2), rate, 1.234, 22.5)
        return bench.Sample(runtime, size, repeat, "pass", [w])

    sizes = [4096, 1 << 20, 64 << 20]
    samples = [
        sample(rt, n, r, rate * (1 + r / 10))
        for rt, rate in (("multiworld-with-a-long-name", 1234.5), ("torch", 987.6))
        for n in sizes
        for r in range(3)
    ]
    rows = bench.summarise(samples, "multiworld-with-a-long-name", "torch")
    result = bench.BenchResult(
        "pair", "multiworld-with-a-long-name", "torch", 3, (1.0, 3.0), samples, rows
    )
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(bench.table(result))
    text = console.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    assert "1358.0" in text and "(988-1185)" in text  # medians and ranges, whole
    fig = bench.figure(result)
    fig.canvas.draw()
    for ax in fig.axes:  # both panels say what both their axes are
        assert ax.get_xlabel() == "tensor size" and ax.get_ylabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == ["4 KiB", "1 MiB", "64 MiB"]
    assert bench.plot(result, tmp_path / "b.png").stat().st_size > 0
