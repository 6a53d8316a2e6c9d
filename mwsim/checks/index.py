"""The facts index: a history read once against its scenario's plan, for every property.

Which world life each record belongs to, the op series of every stream, who reported
which world broken and when, when each fault really happened and whether it was
confirmed, and where the harness fell behind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from mwsim.checks.verdicts import fmt
from mwsim.events import Kind, subject_of
from mwsim.history import (
    Admitted,
    Answered,
    Bringup,
    Broken,
    Error,
    Exit,
    Fault,
    History,
    Hygiene,
    Joined,
    Left,
    Mode,
    Op,
    Ops,
    Phase,
    PhaseName,
    Record,
    Reference,
    Resumed,
    Scale,
    Source,
    Unserved,
)
from mwsim.history import Lag as LagRecord
from mwsim.membership import Plan, Step, WorldId
from mwsim.scenario import Scenario
from mwsim.timing import (
    RuntimeModel,
    model_for,
    progress_window,
    sized,
)


@dataclass(frozen=True)
class Bounds:
    """What the checks judge by: the scenario's ``expect`` over the runtime model."""

    progress_window_s: float
    detect_within_s: dict[str, float]
    join_within_s: float | None
    recover_within_s: float | None = None

    @classmethod
    def of(cls, scenario: Scenario, model: RuntimeModel) -> Bounds:
        e = scenario.expect
        window = progress_window(model, scenario)
        return cls(window, dict(e.detect_within_s), e.join_within_s, e.recover_within_s)


@dataclass(frozen=True)
class Seg:
    """Ops ``first..first+n-1`` of one stream, evenly from ``t0`` to ``t1``."""

    t0: float
    t1: float
    first: int
    n: int
    ok: bool

    @property
    def period(self) -> float:
        return (self.t1 - self.t0) / (self.n - 1) if self.n > 1 else 0.0


@dataclass
class Injected:
    """A scenario fault as it really happened."""

    step: Step
    t: float
    confirmed: bool
    end: float | None = None  # when a hang or slow ended (None: it did not)
    delivered: bool = False  # a leave: the agent took the command (the rest is the runtime's)
    code: int | None = None  # a leave not confirmed: how its process had ended (None: alive)

    @property
    def incomplete(self) -> bool:
        """A leave the harness delivered and the runtime did not complete."""
        return self.step.kind is Kind.LEAVE and self.delivered and not self.confirmed


@dataclass(frozen=True)
class Lag:
    """A stretch of time in which the harness or the machine fell behind (a ``lag``
    record): for ``worker`` only, or (None) for every worker."""

    lo: float
    hi: float
    worker: str | None
    detail: str


@dataclass
class Facts:
    """What a history says, tied to the scenario's plan."""

    scenario: Scenario
    plan: Plan
    model: RuntimeModel
    bounds: Bounds
    end: float
    faults: dict[int, Injected] = field(default_factory=dict)  # by step index
    scaled: dict[int, float] = field(default_factory=dict)  # step index -> when it was done
    ops: dict[WorldId, dict[tuple[str, str | None], list[Seg]]] = field(default_factory=dict)
    reports: dict[WorldId, dict[str, Broken]] = field(default_factory=dict)  # first per worker
    joined: dict[WorldId, dict[str, float]] = field(default_factory=dict)
    died: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)  # exits
    #: exits nobody asked for, each with the last record of that worker before it
    unexpected: list[tuple[Exit, Record | None]] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)
    raised: list[Broken] = field(default_factory=list)  # reports from a failure signal
    left: dict[WorldId, dict[str, float]] = field(default_factory=dict)
    hygiene: Hygiene | None = None
    mode: str = Mode.REAL
    hangs: dict[str, list[Injected]] = field(default_factory=dict)  # by worker, in time order
    cuts: list[Injected] = field(default_factory=list)  # dropping partitions, in time order
    lags: list[Lag] = field(default_factory=list)  # where the harness fell behind
    bringup: Bringup | None = None  # the deployment did not come up: why (a real run)
    reference: Reference | None = None  # ... and whether the reference runtime's did
    #: the serve workload: each admitted request's admission, and what ended it (in order)
    requests: dict[int, Admitted] = field(default_factory=dict)
    outcomes: dict[int, list[Answered | Unserved]] = field(default_factory=dict)


def _nearest(candidates: list[Step], t: float, taken: set[int]) -> int | None:
    """The untaken step scheduled nearest to ``t``."""
    free = [s for s in candidates if s.index not in taken]
    if not free:
        return None
    return min(free, key=lambda s: abs(s.event.at - t)).index


def facts(history: History, scenario: Scenario, model: RuntimeModel | None = None) -> Facts:
    """Read ``history`` against ``scenario`` (once: every property reads the same facts).
    A run whose bring-up failed played none of the scenario's events: it is read against
    the deployment alone."""
    failed = next((e for e in history.of(Bringup) if not e.ok), None)
    if failed is not None:
        scenario = scenario.model_copy(update={"events": []})
    p: Plan = scenario.plan
    model = sized(model or model_for(scenario.runtime), scenario)
    stops = [e.t for e in history.of(Phase) if e.name in (PhaseName.STOP, PhaseName.INTERRUPTED)]
    meta = history.meta
    f = Facts(
        scenario,
        p,
        model,
        Bounds.of(scenario, model),
        min(stops) if stops else scenario.duration_s,
        mode=meta.mode if meta else Mode.REAL,
        bringup=failed,
        reference=history.first(Reference),
    )
    taken: set[int] = set()
    steps = {s.index: s for s in p.steps}
    # the steps a fault or scale record may be, by (kind, subject): a few each
    candidates: dict[tuple[str, str | None], list[Step]] = defaultdict(list)
    for step in p.steps:
        candidates[(step.kind, step.event.subject)].append(step)
    resumed: dict[tuple[str, str], list[float]] = defaultdict(list)
    lags: list[LagRecord] = []
    last: dict[str, Record] = {}  # each worker's latest record
    for e in history:
        worker = getattr(e, "worker", None)
        if isinstance(e, Exit):
            if e.expected is False:
                f.unexpected.append((e, last.get(e.worker)))
            last.pop(e.worker, None)
        elif isinstance(worker, str) and not isinstance(e, LagRecord):
            last[worker] = e
        match e:
            case Op() | Ops():
                life = p.resolve(e.world, e.life, e.t)
                if life is None:
                    continue
                key = (e.worker, e.peer)
                if isinstance(e, Op):
                    seg = Seg(e.t, e.t, e.seq, 1, e.ok)
                else:
                    seg = Seg(e.t0, e.t, e.first, e.last - e.first + 1, True)
                f.ops.setdefault(life.id, {}).setdefault(key, []).append(seg)
            case Broken():
                life = p.resolve(e.world, e.life, e.t)
                if life is not None:
                    f.reports.setdefault(life.id, {}).setdefault(e.worker, e)
                    if e.raised is not None:
                        f.raised.append(e)
            case Joined():
                life = p.resolve(e.world, e.life, e.t)
                if life is not None:
                    f.joined.setdefault(life.id, {}).setdefault(e.worker, e.t)
            case Left():
                life = p.resolve(e.world, e.life, e.t)
                if life is not None:
                    f.left.setdefault(life.id, {}).setdefault(e.worker, e.t)
            case Error():
                f.errors.append(e)
            case Fault():
                index = _nearest(candidates.get((e.do, subject_of(e.attrs)), []), e.t, taken)
                if index is not None:
                    taken.add(index)
                    f.faults[index] = Injected(
                        steps[index],
                        e.t,
                        bool(e.confirmed),
                        delivered=bool(e.get("delivered", False)),
                        code=e.get("code"),
                    )
            case Resumed():
                resumed[(e.do, e.target)].append(e.t)
            case Scale():
                index = _nearest(candidates.get((e.do, subject_of(e.attrs)), []), e.t, taken)
                if index is not None:
                    taken.add(index)
                    f.scaled[index] = e.t
            case Exit():
                f.died.setdefault(e.worker, []).append((e.t, e.expected is not False))
            case Hygiene():
                f.hygiene = e
            case Admitted():
                f.requests.setdefault(e.rid, e)
            case Answered() | Unserved():
                f.outcomes.setdefault(e.rid, []).append(e)
            case LagRecord():
                lags.append(e)
    for step in p.steps:  # faults the history does not record were never confirmed
        ev = step.event
        if ev.info.fault:
            got = f.faults.setdefault(step.index, Injected(step, ev.at, False))
            lasts = ev.lasts()
            if lasts is not None:
                later = [t for t in resumed[(ev.kind, ev.subject)] if t >= got.t]
                got.end = later[0] if later else ev.at + lasts
    for segs in f.ops.values():
        for series in segs.values():
            series.sort(key=lambda s: s.t0)
    for x in sorted(f.faults.values(), key=lambda x: x.t):
        if x.step.kind is Kind.HANG:
            f.hangs.setdefault(x.step.event.subject, []).append(x)
        elif x.step.cut and x.step.event.silent:
            f.cuts.append(x)
    f.lags = _lags(f, lags)
    return f


def _lags(f: Facts, records: list[LagRecord]) -> list[Lag]:
    """Where the harness fell behind: the controller late, or an agent's event loop late
    while the machine's CPU was saturated (late otherwise, the runtime may have blocked
    its loop: that stays the system's doing) and the agent was not hung on purpose."""
    out: list[Lag] = []
    busy = [(e.t - e.lag_s, e.t, e) for e in records if e.source == Source.CPU]
    for e in records:
        lo, worker = e.t - e.lag_s, e.worker
        if e.source == Source.CONTROLLER:
            detail = f"the controller ran {e.lag_s:.2f} s late at {fmt(e.t)}"
            out.append(Lag(lo, e.t, None, detail))
        elif e.source == Source.AGENT and worker is not None:
            if any(x.t <= e.t and (x.end is None or x.end >= lo) for x in f.hangs.get(worker, [])):
                continue
            cpu = next((c for a, b, c in busy if a < e.t and lo < b), None)
            if cpu is not None:
                detail = (
                    f"agent {worker}'s event loop ran {e.lag_s:.2f} s late at {fmt(e.t)} "
                    f"while the CPU was saturated ({cpu.get('detail', 'busy')})"
                )
                out.append(Lag(lo, e.t, worker, detail))
    return out


def lagged(f: Facts, members: Sequence[str], a: float, b: float, over: float) -> str | None:
    """Why a timing violation is not judged: within ``[a, b]`` (from when the thing was
    due to be possible until it happened, or the end) the harness fell behind, for these
    members or for all, for at least the ``over`` seconds the violation exceeds its bound
    (None: it kept up, or fell behind too briefly to explain it)."""
    spans = sorted(
        (max(lag.lo, a), min(lag.hi, b), lag)
        for lag in f.lags
        if lag.lo < b and a < lag.hi and (lag.worker is None or lag.worker in members)
    )
    if not spans:
        return None
    total, reach = 0.0, a
    for lo, hi, _ in spans:  # the length of their union
        total += max(0.0, hi - max(lo, reach))
        reach = max(reach, hi)
    if total < over:
        return None
    longest = max(spans, key=lambda span: span[1] - span[0])[2]
    more = f" ({total:.2f} s behind in all)" if len(spans) > 1 else ""
    return f"the harness fell behind: {longest.detail}{more}"
