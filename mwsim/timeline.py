"""The timeline picture of a run: per world, op rate over time, faults and scale events,
detection instants and (for the model) predicted windows.

Bounded in time and memory whatever the run's size: op rates are counted per time bin
straight from op records and spans (never one instant per op), and past ``MAX_ROWS``
world incarnations the picture summarises: the worlds a property failed on keep their own
rows, the others are grouped by fate (how they formed, how they ended) with their mean
rate, and past ``MAX_MARKERS`` fault and scale events those are drawn as a density strip.
The picture says what it summarised.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mwsim.checks import FAIL, bringup_failure
from mwsim.events import FAULTS, Kind
from mwsim.history import (
    Admitted,
    Answered,
    Broken,
    Cause,
    Fault,
    History,
    Mode,
    Op,
    Ops,
    Scale,
    Unserved,
)
from mwsim.membership import Plan, WorldLife

if TYPE_CHECKING:
    import numpy as np

    from mwsim.runs import ModeRun, Outcome

#: Past this many world incarnations the picture groups worlds instead of one row each.
MAX_ROWS = 40
#: Past this many fault and scale events they are drawn as a density strip, not lines.
MAX_MARKERS = 40
OP_COLOUR = "#4c9a2a"
FAIL_COLOUR = "#c0392b"  # a world a violated property names


def bins_for(duration: float, start: float = 0.0) -> np.ndarray:
    """The time bins op rates are counted in: 50 to 400 of them from ``start`` on."""
    import numpy as np

    n = max(50, min(400, int(duration * 10)))
    edges: np.ndarray = np.linspace(start, start + duration, n + 1)
    return edges


@dataclass
class Counts:
    """Ops per time bin of one world incarnation, over the bins from ``first`` on that it
    has ops in (a life on a long run spans a few of thousands of bins)."""

    first: int
    counts: np.ndarray

    def dense(self, size: int) -> np.ndarray:
        """The counts over all ``size`` bins."""
        import numpy as np

        out: np.ndarray = np.zeros(size)
        out[self.first : self.first + len(self.counts)] = self.counts
        return out


def op_counts(history: History, plan: Plan, bins: np.ndarray) -> Iterator[tuple[int, Counts]]:
    """Ops per time bin for each world incarnation, as ``(plan row, counts)`` in row order,
    from op records and spans alike (a span's ops spread evenly over it, as they were
    issued). Computed one incarnation at a time, so memory holds one life's bins."""
    edges = bins.tolist()
    by_row: dict[int, list[Op | Ops]] = defaultdict(list)
    rows: dict[tuple[str, int], int] = {}  # (world, life) -> plan row, for records naming it
    for e in history:
        if not isinstance(e, Op | Ops):
            continue
        world, life = e.world, e.life
        row = rows.get((world, life)) if life is not None else None
        if row is None:
            found = plan.resolve(world, life, e.t)
            if found is None:
                continue
            row = plan.row(found.id)
            if life is not None:
                rows[(world, life)] = row
        by_row[row].append(e)
    for row in sorted(by_row):
        yield row, _life_counts(by_row[row], bins, edges)


def _life_counts(records: list[Op | Ops], bins: np.ndarray, edges: list[float]) -> Counts:
    """One incarnation's op records and spans counted over the bins they reach."""
    import numpy as np

    size = len(edges) - 1
    lo = min(e.t0 if isinstance(e, Ops) else e.t for e in records)
    hi = max(e.t for e in records)
    # a bin of margin each side (rounding at edges)
    first = max(bisect_right(edges, lo) - 2, 0)
    counts = np.zeros(max(min(bisect_right(edges, hi) + 1, size) - first, 0))
    for e in records:
        if isinstance(e, Op) or e.last == e.first:
            _count_at(counts, first, edges, e.t, 1)
            continue
        n = e.last - e.first + 1
        t0 = e.t0
        step = (e.t - t0) / (n - 1)
        if step <= 0:
            _count_at(counts, first, edges, t0, n)
            continue
        # ops issued before each edge: k with t0 + k*step < edge (only the edges the span
        # reaches change: none before it, all n after)
        a = max(bisect_left(edges, t0) - 1, first)
        b = min(bisect_right(edges, e.t) + 1, first + len(counts) + 1)
        before = np.ceil((bins[a:b] - t0) / step).clip(0, n)
        counts[a - first : b - 1 - first] += np.diff(before)
    return Counts(first, counts)


def _count_at(counts: np.ndarray, first: int, edges: list[float], t: float, n: int) -> None:
    i = bisect_right(edges, t) - 1 - first
    if 0 <= i < len(counts):
        counts[i] += n


@dataclass
class Layout:
    """Which drawn row each world incarnation goes to, and what was summarised."""

    labels: list[str]  # one per drawn row, bottom up
    row_of: list[int]  # plan row -> drawn row
    sizes: list[int]  # world incarnations per drawn row
    alone: set[int] = field(default_factory=set)  # drawn rows holding one world each
    note: str = ""


def _fate(life: WorldLife) -> str:
    formed = "initial" if life.origin is None else f"from {life.origin}"
    ended = "to the end" if life.end_cause is None else f"ended by {life.end_cause}"
    return f"{formed}, {ended}"


def layout(plan: Plan, failing: set[str]) -> Layout:
    """One row per world incarnation, or (past ``MAX_ROWS``) failing worlds alone and the
    others grouped by fate."""
    lives = plan.worlds
    if len(lives) <= MAX_ROWS:
        labels = [plan.label(life) for life in lives]
        return Layout(labels, list(range(len(lives))), [1] * len(lives), set(range(len(lives))))
    alone = [i for i, life in enumerate(lives) if life.name in failing][: MAX_ROWS // 2]
    groups: dict[str, list[int]] = defaultdict(list)
    chosen = set(alone)
    for i, life in enumerate(lives):
        if i not in chosen:
            groups[_fate(life)].append(i)
    labels, row_of, sizes = [], [0] * len(lives), []
    for name, members in sorted(groups.items(), key=lambda g: -len(g[1])):
        for i in members:
            row_of[i] = len(labels)
        labels.append(f"{len(members)} world{'s' if len(members) > 1 else ''}: {name}")
        sizes.append(len(members))
    first_alone = len(labels)
    for i in alone:
        row_of[i] = len(labels)
        labels.append(plan.label(lives[i]))
        sizes.append(1)
    failed = len({life.name for life in lives} & failing)
    note = f"{len(lives)} world incarnations: {len(groups)} group(s) by fate (mean rate per world)"
    if alone:
        note += f"; {len(alone)} failing world(s) drawn alone"
        note += f" of {failed}" if failed > len(alone) else ""
    return Layout(labels, row_of, sizes, set(range(first_alone, len(labels))), note)


def _colour(do: str) -> str:
    """How a kind of event is drawn (grey for kinds this mwsim does not know)."""
    try:
        return Kind(do).info.colour
    except ValueError:
        return "grey"


def _marker(ax: Any, t: float, colour: str, solid: bool) -> None:
    """A vertical line at ``t``: solid for faults, dashed for scaling."""
    ax.axvline(t, color=colour, linewidth=1.6 if solid else 1.2, linestyle="-" if solid else "--")


#: Lanes of event labels above a panel; a label that finds no free lane is left out (its
#: line stays, in its kind's colour) and the panel's title counts it.
LABEL_LANES = 6
LANE_PT = 9.0


def _labels(ax: Any, labels: list[tuple[float, str, str]]) -> tuple[int, int]:
    """Event labels above the panel, horizontal, each in the lowest lane where it collides
    with no other; (lanes used, labels left out)."""
    renderer = ax.figure.canvas.get_renderer()
    ends: list[float] = []  # per lane: where its last label ends (display x)
    left_out = 0
    for t, text, colour in sorted(labels):
        label = ax.annotate(
            text,
            (t, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-2, 2),
            textcoords="offset points",
            fontsize=7,
            color=colour,
            ha="left",
            va="bottom",
            annotation_clip=False,
        )
        box = label.get_window_extent(renderer)
        lane = next((i for i, end in enumerate(ends) if end + 3 < box.x0), len(ends))
        if lane >= LABEL_LANES:
            label.remove()
            left_out += 1
            continue
        label.xyann = (-2, 2 + lane * LANE_PT)
        if lane == len(ends):
            ends.append(box.x1)
        ends[lane] = box.x1
    return len(ends), left_out


def _density(ax: Any, records: list[Fault | Scale], bins: np.ndarray, row: int) -> None:
    """Fault and scale events as counts per bin, one step line per kind, in ``row``."""
    import numpy as np

    by_kind: dict[str, list[float]] = defaultdict(list)
    for e in records:
        by_kind[e.do].append(e.t)
    top = max((np.histogram(ts, bins=bins)[0].max() for ts in by_kind.values()), default=1) or 1
    for do, ts in sorted(by_kind.items()):
        counts, _ = np.histogram(ts, bins=bins)
        ax.step(bins[:-1], row + 0.05 + 0.85 * counts / top, where="post", color=_colour(do), lw=1)


def _draw(
    ax: Any, outcome: Outcome, run: ModeRun, rows: Layout, bins: np.ndarray, zoom: bool = False
) -> None:
    """One run's panel over ``bins`` (the whole run, or the zoom on where things happen)."""
    first, last = float(bins[0]), float(bins[-1])
    plan = outcome.scenario.plan
    width = bins[1] - bins[0]
    drawn: dict[int, np.ndarray] = {}
    for row, sparse in op_counts(run.history, plan, bins):
        at = rows.row_of[row]
        counts = sparse.dense(len(bins) - 1)
        drawn[at] = drawn[at] + counts if at in drawn else counts
    for at, counts in drawn.items():
        rate = counts / width / rows.sizes[at]
        top = rate.max() or 1.0
        ax.fill_between(
            bins[:-1], at, at + 0.8 * rate / top, step="post", color=OP_COLOUR, alpha=0.85, lw=0
        )
    facts = run.facts
    if facts is not None:  # a hang, slow or cut over the worlds drawn alone
        spans_of: dict[int, set[int]] = defaultdict(set)
        for i, life in enumerate(plan.worlds):
            if rows.row_of[i] in rows.alone:
                for span in life.spans:
                    spans_of[span.event].add(rows.row_of[i])
        for injected in facts.faults.values():
            step = injected.step
            if not step.event.info.lasting or not injected.confirmed:
                continue
            end = injected.end if injected.end is not None else last
            for at in spans_of.get(step.index, ()):
                colour = step.event.info.colour
                ax.fill_between([injected.t, end], at, at + 1, color=colour, alpha=0.22, lw=0)
    n = len(rows.labels)
    markers = [e for e in run.history if isinstance(e, Fault | Scale) and first <= e.t <= last]
    labels: list[tuple[float, str, str]] = []
    if len(markers) > MAX_MARKERS:
        _density(ax, markers, bins, n)
    else:
        for m in markers:
            name = m.target or m.get("world") or m.get("worker")
            _marker(ax, m.t, _colour(m.do), solid=isinstance(m, Fault))
            labels.append((m.t, f"{m.do} {name}", _colour(m.do)))
    xs, ys, windows = [], [], []
    for b in run.history.of(Broken):
        broken = plan.resolve(b.world, b.life, b.t)
        if not first <= b.t <= last or broken is None:
            continue
        at = rows.row_of[plan.row(broken.id)]
        xs.append(b.t)
        ys.append(at + 0.4)
        if b.window is not None and at in rows.alone:
            windows.append((at + 0.9, *b.window))
    if windows:
        y, lo, hi = zip(*windows, strict=True)
        ax.hlines(y, lo, hi, color="black", linewidth=1)
    _broken_bounds(ax, outcome, run, rows)
    if xs:
        few = len(xs) <= MAX_MARKERS
        ax.scatter(xs, ys, marker="X", color="black", s=64 if few else 6, alpha=1 if few else 0.3)
    title = f"{run.mode}: {run.verdict.upper()}" + (
        f", {first:.0f} to {last:.0f} s" if zoom else ""
    )
    failed = bringup_failure(facts) if facts is not None else None
    if facts is not None and facts.bringup is not None and failed is not None and not zoom:
        _marker(ax, facts.bringup.t, "black", solid=True)
        labels.append((facts.bringup.t, "bring-up", "black"))
        whose = "the harness's" if failed["cause"] == Cause.HARNESS else "the runtime's"
        why = failed["headline"]
        why = why if len(why) <= 90 else why[:89] + "…"
        title += f" (bring-up failed at the {failed['stage']} stage, {whose} doing: {why})"
    extra = ["faults & scaling per bin"] if len(markers) > MAX_MARKERS else []
    ax.set_ylim(0, n + len(extra))
    ticks = [i + 0.4 for i in range(n + len(extra))]
    ax.set_yticks(ticks, [] if zoom else rows.labels + extra, fontsize=8)
    failing = failing_worlds(outcome)
    for tick in ax.get_yticklabels():  # a world a violated property names, in red
        if tick.get_text().split(" ")[0] in failing:
            tick.set_color(FAIL_COLOUR)
            tick.set_fontweight("bold")
    extent = last - first
    ax.set_xlim(first - (0.5 if extent < 100 and not zoom else 0.0), last)
    ax.grid(axis="x", alpha=0.3)
    lanes, left_out = _labels(ax, labels)
    if left_out:
        title += f"; {left_out} event label(s) left out (colours say the kind)"
    ax.set_title(title, fontsize=10 if failed is None else 8, loc="left", pad=4 + lanes * LANE_PT)


#: The height of a run's requests panel (inches).
REQUESTS_IN = 1.8
LATENCY_COLOURS = {"p50": "#1f77b4", "p99": "#9467bd"}


def _requests(
    ax: Any, outcome: Outcome, run: ModeRun, rows: Layout, bins: np.ndarray, zoom: bool = False
) -> None:
    """The serve workload's requests over time: p50 and p99 latency of the requests
    answered in each bin (log scale), and answered and failed requests per second (right
    axis), with lasting faults shaded and the others marked."""
    import numpy as np

    answers = run.history.of(Answered)
    failed = run.history.of(Unserved)
    width = float(bins[1] - bins[0])
    index = np.clip(np.searchsorted(bins, [a.t for a in answers], side="right") - 1, 0, None)
    latencies: dict[int, list[float]] = defaultdict(list)
    for i, a in zip(index.tolist(), answers, strict=True):
        if i < len(bins) - 1:
            latencies[i].append(a.latency_s * 1000)
    drawn = []
    for name, q in (("p50", 50), ("p99", 99)):
        ys = np.full(len(bins) - 1, np.nan)  # a gap where nothing was answered
        for i, values in latencies.items():
            ys[i] = np.percentile(values, q)
        ax.step(bins[:-1], ys, where="post", color=LATENCY_COLOURS[name], lw=1.4)
        drawn += [y for y in ys.tolist() if y == y]
    if drawn and max(drawn) > 20 * max(min(drawn), 1e-6):  # orders of magnitude: log
        ax.set_yscale("log")
    ax.margins(y=0.15)
    ax.set_ylabel("" if zoom else "latency ms", fontsize=8)
    rate = ax.twinx()
    for items, colour in ((answers, OP_COLOUR), (failed, FAIL_COLOUR)):
        counts, _ = np.histogram([e.t for e in items], bins=bins)
        rate.step(bins[:-1], counts / width, where="post", color=colour, lw=1, alpha=0.8)
    rate.set_ylabel("" if zoom else "per second", fontsize=8)
    rate.tick_params(labelsize=7)
    ax.tick_params(labelsize=7)
    first, last = float(bins[0]), float(bins[-1])
    facts = run.facts
    if facts is not None:
        for x in facts.faults.values():
            if not x.confirmed or not first <= x.t <= last:
                continue
            colour = x.step.event.info.colour
            if x.step.event.info.lasting:
                ax.axvspan(x.t, x.end if x.end is not None else last, color=colour, alpha=0.15)
            else:
                ax.axvline(x.t, color=colour, lw=1.2)
    ax.set_xlim(first - (0.5 if last - first < 100 and not zoom else 0.0), last)
    ax.set_title(
        f"{run.mode}: requests ({len(answers)} answered, {len(failed)} failed)",
        fontsize=9,
        loc="left",
    )


def _broken_bounds(ax: Any, outcome: Outcome, run: ModeRun, rows: Layout) -> None:
    """Each bound a violated property says was broken, in red on its world's row: from the
    fault (or the last op) to when the report (or the next op) was due."""
    plan = outcome.scenario.plan
    verdicts = outcome.verdicts if run is outcome.primary else run.verdicts
    for v in verdicts:
        if v.verdict != FAIL:
            continue
        for world, lo, hi in v.bounds:
            life = plan.resolve(world, None, lo)
            if life is None or rows.row_of[plan.row(life.id)] not in rows.alone:
                continue
            row = rows.row_of[plan.row(life.id)]
            ax.hlines(row + 0.86, lo, hi, color=FAIL_COLOUR, linewidth=2.2)
            ax.vlines(hi, row, row + 0.95, color=FAIL_COLOUR, linewidth=1.6)  # when it was due


def _span(outcome: Outcome) -> float:
    """How much time the picture shows: the scenario, or a longer failed bring-up."""
    ends = [run.facts.bringup.t for run in outcome.runs if run.facts and run.facts.bringup]
    return max([outcome.scenario.duration_s, *(t + 0.25 for t in ends)])


def failing_worlds(outcome: Outcome) -> set[str]:
    """The worlds a failed property names, in any run."""
    named: set[str] = set()
    for run in outcome.runs:
        for v in run.verdicts:
            if v.verdict == FAIL:
                named.update(w for w in (*v.worlds, v.world) if w)
    return named


def _legend(outcome: Outcome, runs: list[ModeRun]) -> list[Any]:
    """A legend entry for every kind of mark drawn, and only for those."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(color=OP_COLOUR, label="op rate (per world, scaled)")]
    done = {e.do for run in runs for e in run.history if isinstance(e, Fault | Scale)}
    for kind in Kind:
        if kind.value in done:
            style = "-" if kind in FAULTS else "--"
            handles.append(Line2D([], [], color=kind.info.colour, linestyle=style, label=kind))
    if any(step.event.info.lasting for step in outcome.scenario.plan.steps):
        handles.append(
            Patch(color="grey", alpha=0.3, label="a lasting fault in force (shaded in its colour)")
        )
    broken = [e for run in runs for e in run.history.of(Broken)]
    if broken:
        mark = Line2D([], [], marker="X", color="black", linestyle="", label="reported broken")
        handles.append(mark)
    if any(e.window is not None for e in broken):
        handles.append(Line2D([], [], color="black", lw=1, label="the model's detection window"))
    if failing_worlds(outcome):
        handles.append(Patch(color=FAIL_COLOUR, label="a world a violated property names"))
    if any(run.history.first(Admitted) for run in runs):
        for name, colour in LATENCY_COLOURS.items():
            handles.append(Line2D([], [], color=colour, lw=1.4, label=f"{name} latency"))
        handles.append(Line2D([], [], color=OP_COLOUR, lw=1, label="requests answered / s"))
        handles.append(Line2D([], [], color=FAIL_COLOUR, lw=1, label="requests failed / s"))
    if any(v.bounds for run in runs for v in run.verdicts if v.verdict == FAIL):
        handles.append(
            Line2D([], [], color=FAIL_COLOUR, lw=2.2, label="a bound it broke (due at its tick)")
        )
    return handles


#: Zoom in when the events sit in less than this share of the run.
ZOOM_BELOW = 0.2


def focus(outcome: Outcome) -> tuple[float, float] | None:
    """Where things happen, when that is a small part of a long run: the span of the
    middle 98 % of faults, scale events, reports and first problems, with a margin; None
    when they fill the run (or there are too few)."""
    import numpy as np

    times = [
        e.t for run in outcome.runs for e in run.history if isinstance(e, Fault | Scale | Broken)
    ]
    times += [v.at for v in outcome.verdicts if v.verdict == FAIL and v.at is not None]
    duration = _span(outcome)
    if len(times) < 2 or duration < 60:
        return None
    quantiles: np.ndarray = np.quantile(times, [0.01, 0.99])
    lo, hi = float(quantiles[0]), float(quantiles[1])
    if hi - lo >= ZOOM_BELOW * duration:
        return None
    margin = max(0.1 * (hi - lo), 2.0)
    return max(0.0, lo - margin), min(duration, hi + margin)


def timeline_png(outcome: Outcome, path: str | Path) -> Path:
    """Per world: op rate over time (green), faults and scale events by kind, detection
    instants (X), the bounds a violation broke (red) and, for the model, predicted windows;
    beside it a zoom on where things happen when that is a small part of a long run."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = layout(outcome.scenario.plan, failing_worlds(outcome))
    bins = bins_for(_span(outcome))
    runs = sorted(outcome.runs, key=lambda r: r.mode != Mode.REAL)  # the real run on top
    zoom = focus(outcome)
    shown = len(rows.labels) + 1
    serving = any(run.history.first(Admitted) for run in runs)  # a requests panel per run
    panels = [
        (run, kind) for run in runs for kind in (("requests",) if serving else ()) + ("worlds",)
    ]
    heights = [REQUESTS_IN if kind == "requests" else 1.0 + 0.3 * shown for _, kind in panels]
    height = 1.0 + sum(heights)
    columns = 2 if zoom else 1
    fig, axes = plt.subplots(
        len(panels),
        columns,
        figsize=(11 + 5 * (columns - 1), height),
        squeeze=False,
        sharex="col",
        gridspec_kw={"width_ratios": [3, 2][:columns], "height_ratios": heights},
    )
    for i, (run, kind) in enumerate(panels):
        draw = _draw if kind == "worlds" else _requests
        draw(axes[i, 0], outcome, run, rows, bins)
        if zoom is not None:
            lo, hi = zoom
            draw(axes[i, 1], outcome, run, rows, bins_for(hi - lo, lo), zoom=True)
            axes[i, 0].axvspan(lo, hi, color="#3b6ea5", alpha=0.08, lw=0)
    axes[-1, 0].set_xlabel("seconds since the workload started")
    if zoom is not None:
        axes[-1, 1].set_xlabel("zoomed to where the events are (shaded on the left)")
    handles = _legend(outcome, runs)
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    title = f"{outcome.scenario.name}: {outcome.verdict.upper()}"
    notes = [rows.note] if rows.note else []
    most = max(len(run.history.of(Fault, Scale)) for run in runs)
    if most > MAX_MARKERS:
        notes.append(f"{most} fault and scale events drawn as counts per bin")
    wrapped = textwrap.fill("; ".join(notes), 150 if zoom else 110) if notes else ""
    fig.suptitle(title + ("\n" + wrapped if wrapped else ""), fontsize=12 if not notes else 10)
    legend_rows = -(-len(handles) // 4)
    fig.tight_layout(rect=(0, (0.25 + 0.17 * legend_rows) / height, 1, 1))
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
