"""The system under test against a baseline on one workload without faults, side by side
(``mwsim bench SCENARIO --runtime A --baseline B``).

Runs alternate (A then B, then B then A, ...), so a shared machine's drift falls on both
sides alike; each figure is the median over the repeats, with its spread (min to max).
Per world: ops completed per second over the measured window (after a warm-up) and
latency percentiles of those ops, as the workload recorded them (one way for a stream,
the round trip for a request, the call for an all-reduce).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mwsim.history import History, Mode, Op
from mwsim.internal import jsonout
from mwsim.replay import Controller
from mwsim.replay.zygote import Zygote
from mwsim.runs import run_scenario, with_overrides
from mwsim.scenario import Expect, Scenario

#: The row of a world's figures that sums (throughput) or pools (latency) every world.
ALL = "all"


@dataclass(frozen=True)
class WorldSample:
    """One world in one run: ops completed in the window, their rate and latency."""

    world: str
    ops: int
    ops_per_s: float
    p50_ms: float | None
    p99_ms: float | None


@dataclass
class Sample:
    """One run of one runtime at one tensor size."""

    runtime: str
    tensor_bytes: int
    repeat: int
    verdict: str
    worlds: list[WorldSample]


@dataclass(frozen=True)
class Spread:
    """The median of the repeats and their range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread | None:
        got = list(values)
        if not got:
            return None
        return cls(statistics.median(got), min(got), max(got))


@dataclass(frozen=True)
class Row:
    """One world (or ``all``) at one tensor size: both runtimes and what A loses to B."""

    tensor_bytes: int
    world: str
    ops_per_s: dict[str, Spread | None]
    p50_ms: dict[str, Spread | None]
    p99_ms: dict[str, Spread | None]
    throughput_loss_pct: float | None  # positive: the runtime is slower than the baseline


@dataclass
class BenchResult:
    scenario: str
    runtime: str
    baseline: str
    repeat: int
    window_s: tuple[float, float]
    samples: list[Sample] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def not_passed(self) -> list[Sample]:
        """Runs whose properties did not all hold (their figures are suspect)."""
        return [s for s in self.samples if s.verdict != "pass"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(history: History, start: float, end: float) -> list[WorldSample]:
    """Per world (and ``all``), the ops that completed intact in ``[start, end)``."""
    latencies: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for e in history.of(Op):
        if not e.ok or not start <= e.t < end:
            continue
        counts[e.world] = counts.get(e.world, 0) + 1
        if e.latency_s is not None:
            latencies.setdefault(e.world, []).append(e.latency_s)
    span = end - start

    def sample(world: str, ops: int, lat: list[float]) -> WorldSample:
        p50 = _percentile(lat, 0.5) * 1000 if lat else None
        p99 = _percentile(lat, 0.99) * 1000 if lat else None
        return WorldSample(world, ops, ops / span, p50, p99)

    out = [sample(w, counts[w], latencies.get(w, [])) for w in sorted(counts)]
    pooled = [x for w in sorted(latencies) for x in latencies[w]]
    return [*out, sample(ALL, sum(counts.values()), pooled)]


def summarise(samples: list[Sample], runtime: str, baseline: str) -> list[Row]:
    """Medians and spreads per tensor size and world, and the throughput A loses to B."""
    rows: list[Row] = []
    for size in sorted({s.tensor_bytes for s in samples}):
        worlds = sorted(
            {w.world for s in samples if s.tensor_bytes == size for w in s.worlds},
            key=lambda w: (w == ALL, w),
        )
        for world in worlds:

            def spread(rt: str, attr: str, world: str = world, size: int = size) -> Spread | None:
                return Spread.of(
                    getattr(w, attr)
                    for s in samples
                    if s.runtime == rt and s.tensor_bytes == size
                    for w in s.worlds
                    if w.world == world and getattr(w, attr) is not None
                )

            ops = {rt: spread(rt, "ops_per_s") for rt in (runtime, baseline)}
            ours, theirs = ops[runtime], ops[baseline]
            loss = None
            if ours is not None and theirs is not None and theirs.median > 0:
                loss = round((1 - ours.median / theirs.median) * 100, 2)
            rows.append(
                Row(
                    size,
                    world,
                    ops,
                    {rt: spread(rt, "p50_ms") for rt in (runtime, baseline)},
                    {rt: spread(rt, "p99_ms") for rt in (runtime, baseline)},
                    loss,
                )
            )
    return rows


def without_faults(
    scenario: Scenario, tensor_bytes: int | None = None, **workload: Any
) -> Scenario:
    """The scenario's deployment and workload with no events and the default bounds (no
    expected violations), optionally another tensor size or pace."""
    update = {k: v for k, v in workload.items() if v is not None}
    if tensor_bytes is not None:
        update["tensor_bytes"] = tensor_bytes
    return scenario.model_copy(
        update={
            "events": [],
            "expect": Expect(),
            "workload": scenario.workload.model_copy(update=update),
        }
    )


def bench(
    scenario: Scenario,
    runtime: str,
    baseline: str,
    out: Path,
    *,
    sizes: Iterable[int] = (),
    repeat: int = 3,
    warmup_s: float = 1.0,
    interval_ms: float | None = None,
    on_run: Callable[[Sample], None] = lambda _: None,
) -> BenchResult:
    """Run both runtimes alternately, ``repeat`` times per tensor size; their figures.

    ``Inconclusive`` (before anything starts) if either runtime cannot run here."""
    sides = {rt: with_overrides(scenario, runtime=rt) for rt in (runtime, baseline)}
    window = (warmup_s, scenario.duration_s)
    result = BenchResult(scenario.name, runtime, baseline, repeat, window)
    for side in sides.values():  # can both run here? (Inconclusive before anything starts)
        Controller(without_faults(side), out)
    out.mkdir(parents=True, exist_ok=True)
    zygotes = {rt: Zygote(rt, out / f"zygote-{rt}.log") for rt in sides}
    try:
        for size in list(sizes) or [scenario.workload.tensor_bytes]:
            for r in range(repeat):
                order = [runtime, baseline] if r % 2 == 0 else [baseline, runtime]
                for rt in order:
                    s = without_faults(sides[rt], size, interval_ms=interval_ms)
                    where = out / f"{size}" / f"{r}-{rt}"
                    outcome = run_scenario(s, mode=Mode.REAL, out_dir=where, zygote=zygotes[rt])
                    history = outcome.primary.history
                    sample = Sample(rt, size, r, outcome.verdict, measure(history, *window))
                    result.samples.append(sample)
                    on_run(sample)
    finally:
        for zygote in zygotes.values():
            zygote.stop()
    result.rows = summarise(result.samples, runtime, baseline)
    return result


def to_dict(result: BenchResult) -> dict[str, Any]:
    data = asdict(result)
    data["not_passed"] = [asdict(s) for s in result.not_passed]
    return data


def write_json(result: BenchResult, path: str | Path) -> Path:
    Path(path).write_text(jsonout.dumps(to_dict(result), indent=True) + "\n")
    return Path(path)


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def table(result: BenchResult) -> Any:
    """The terminal table: per size and world, both runtimes' medians (and spreads)."""
    from rich.table import Table

    a, b = result.runtime, result.baseline
    t = Table(title=f"{result.scenario}: {a} vs {b} ({result.repeat} runs each, no faults)")
    for name in ("tensor", "world", f"{a} ops/s", f"{b} ops/s", "loss", "p50 ms", "p99 ms"):
        # fold, never cut: a CI log is 80 columns wide
        left = name in ("tensor", "world")
        t.add_column(name, justify="left" if left else "right", overflow="fold")

    def ops(s: Spread | None) -> str:
        if s is None:
            return "-"
        whole = ".0f" if s.low >= 100 else ".1f"
        return f"{s.median:.1f}\n({s.low:{whole}}-{s.high:{whole}})"

    def ms(row: Row, attr: str) -> str:
        got = [getattr(row, attr)[rt] for rt in (a, b)]
        return " / ".join("-" if s is None else f"{s.median:.2f}" for s in got)

    for row in result.rows:
        loss = "-" if row.throughput_loss_pct is None else f"{row.throughput_loss_pct:+.1f} %"
        style = "bold" if row.world == ALL else None
        t.add_row(
            _size(row.tensor_bytes),
            row.world,
            ops(row.ops_per_s[a]),
            ops(row.ops_per_s[b]),
            loss,
            ms(row, "p50_ms"),
            ms(row, "p99_ms"),
            style=style,
        )
    t.caption = f"loss: throughput {a} loses to {b}; latency columns: {a} / {b}"
    return t


def plot(result: BenchResult, path: str | Path) -> Path:
    """The picture of ``figure`` as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(result)
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def figure(result: BenchResult) -> Any:
    """Throughput of both runtimes by tensor size (all worlds), with each run's spread,
    and the throughput the runtime loses to the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # all worlds together; a deployment of one world has only its own rows
    rows = [r for r in result.rows if r.world == ALL] or result.rows
    sizes = [r.tensor_bytes for r in rows]
    x = list(range(len(sizes)))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for rt, colour in ((result.runtime, "#1f77b4"), (result.baseline, "#7f7f7f")):
        spreads = [r.ops_per_s[rt] for r in rows]
        med = [s.median if s else float("nan") for s in spreads]
        low = [s.median - s.low if s else 0.0 for s in spreads]
        high = [s.high - s.median if s else 0.0 for s in spreads]
        top.errorbar(x, med, yerr=[low, high], marker="o", capsize=3, label=rt, color=colour)
    top.set_yscale("log")
    top.set_ylabel("ops/s, all worlds\n(median and range, log scale)")
    top.set_xlabel("tensor size")
    top.tick_params(labelbottom=True)
    top.legend(title="runtime")
    losses = [r.throughput_loss_pct if r.throughput_loss_pct is not None else 0.0 for r in rows]
    colours = ["#d62728" if loss > 0 else "#2ca02c" for loss in losses]
    bars = bottom.bar(x, losses, width=0.5, color=colours)
    bottom.bar_label(bars, labels=[f"{loss:+.1f} %" for loss in losses], fontsize=8)
    bottom.set_title(
        f"red: {result.runtime} slower than {result.baseline}; green: faster", fontsize=9
    )
    bottom.set_xticks(x, [_size(n) for n in sizes])
    bottom.axhline(0, color="black", lw=0.8)
    bottom.set_ylabel(f"throughput {result.runtime}\nloses to {result.baseline} (%)")
    bottom.set_xlabel("tensor size")
    fig.suptitle(f"{result.scenario}: {result.runtime} vs {result.baseline}, no faults")
    fig.tight_layout()
    return fig
