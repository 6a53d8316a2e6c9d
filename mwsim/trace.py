"""The Perfetto / Chrome trace of a run: a process per mode, a thread per world; op-rate
counters, fault and scale instants, broken, joined and left reports.

Complete (every record of those kinds), and written in one streaming pass: events are
yielded one by one and written as they come, and op rates are counted per time bin from
op records and spans, a counter event written only where a world's rate changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mwsim.history import Broken, Fault, Joined, Left, Phase, Resumed, Scale
from mwsim.internal import jsonout
from mwsim.timeline import op_counts

if TYPE_CHECKING:
    from mwsim.runs import Outcome

#: The op-rate counters' bin: a quarter second, wider on long runs (at most 4,000 bins).
COUNTER_S = 0.25
MAX_BINS = 4000


def _counter_bins(duration: float) -> Any:
    import numpy as np

    width = max(COUNTER_S, duration / MAX_BINS)
    return np.arange(0.0, duration + width, width)


def trace_events(outcome: Outcome, origin: float | None = None) -> Iterator[dict[str, Any]]:
    """The trace's events, one at a time (timestamps in µs from the earliest record)."""
    import numpy as np

    plan = outcome.scenario.plan
    labels = [plan.label(life) for life in plan.worlds]
    origin = _origin(outcome) if origin is None else origin
    bins = _counter_bins(outcome.scenario.duration_s)
    width = float(bins[1] - bins[0])

    def us(t: float) -> float:
        return round((t - origin) * 1e6, 1)

    for pid, run in enumerate(outcome.runs, start=1):
        yield {"ph": "M", "pid": pid, "name": "process_name", "args": {"name": run.mode}}
        for tid, label in enumerate(labels, start=1):
            yield {
                "ph": "M",
                "pid": pid,
                "tid": tid,
                "name": "thread_name",
                "args": {"name": label},
            }
        size = len(bins) - 1
        for row, sparse in op_counts(run.history, plan, bins):
            name = f"ops/s {labels[row]}"
            # the life's bins and one on each side (zero), changes only; zero before
            lo, hi = max(sparse.first - 1, 0), min(sparse.first + len(sparse.counts) + 1, size)
            rates = np.zeros(hi - lo)
            rates[sparse.first - lo : sparse.first - lo + len(sparse.counts)] = np.round(
                sparse.counts / width, 1
            )
            if lo > 0:
                yield {"ph": "C", "pid": pid, "name": name, "ts": us(0.0), "args": {"ops": 0.0}}
            for i in np.flatnonzero(np.r_[lo == 0, rates[1:] != rates[:-1]]):
                ts = us(float(bins[lo + i]))
                yield {"ph": "C", "pid": pid, "name": name, "ts": ts, "args": {"ops": rates[i]}}
        for e in run.history:
            if isinstance(e, Fault | Resumed | Scale | Phase):
                name = e.name if isinstance(e, Phase) else e.do
                target = e.get("target") or e.get("worker") or e.get("world") or ""
                yield {
                    "ph": "i",
                    "s": "p",
                    "pid": pid,
                    "ts": us(e.t),
                    "name": f"{e.kind} {name} {target}".strip(),
                    "args": dict(e.attrs),
                }
            elif isinstance(e, Broken | Joined | Left):
                life = plan.resolve(e.world, e.life, e.t)
                if life is None:
                    continue
                yield {
                    "ph": "i",
                    "s": "t",
                    "pid": pid,
                    "tid": plan.row(life.id) + 1,
                    "ts": us(e.t),
                    "name": f"{e.kind} by {e.worker}",
                    "args": dict(e.attrs),
                }


def _origin(outcome: Outcome) -> float:
    """The earliest instant of any run (bring-up is before 0): the trace's zero."""
    return min([0.0, *(e.t for run in outcome.runs for e in run.history)])


def metadata(outcome: Outcome, origin: float) -> dict[str, Any]:
    return {"scenario": outcome.scenario.name, "t0_us": round(-origin * 1e6, 1)}


def trace_dict(outcome: Outcome) -> dict[str, Any]:
    """The whole trace as one dict (small runs; ``write_trace`` streams it)."""
    origin = _origin(outcome)
    return {
        "traceEvents": list(trace_events(outcome, origin)),
        "displayTimeUnit": "ms",
        "metadata": metadata(outcome, origin),
    }


def write_trace(outcome: Outcome, path: str | Path) -> Path:
    """Write the trace event by event (memory does not grow with the run)."""
    out, origin = Path(path), _origin(outcome)
    with out.open("w") as f:
        f.write('{"displayTimeUnit": "ms", "metadata": ')
        f.write(jsonout.dumps(metadata(outcome, origin)))
        f.write(', "traceEvents": [\n')
        for i, event in enumerate(trace_events(outcome, origin)):
            if i:
                f.write(",\n")
            f.write(jsonout.dumps(event))
        f.write("\n]}\n")
    return out
