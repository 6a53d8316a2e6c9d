"""The properties of a run, judged from its History and its scenario.

The same code judges a predicted (simulated) and an observed (real) history. First the
facts are read out of the history: which world life each event belongs to, the op series
of every stream, who reported which world broken and when, when each fault really
happened and whether it was confirmed. Each property is then a plain function of those
facts that returns a ``Verdict`` with one line of evidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, NamedTuple

from mwsim.events import BREAKING, Degrade, GpuSlow, Kind, Slow, Target, subject_of
from mwsim.history import (
    Bringup,
    Broken,
    Cause,
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
    Stage,
)
from mwsim.history import Lag as LagRecord
from mwsim.membership import Plan, Step, WorldId, WorldLife
from mwsim.scenario import Property, Scenario
from mwsim.timing import (
    RuntimeModel,
    detection_window,
    failing_peers,
    model_for,
    progress_window,
    sized,
)


class Result(StrEnum):
    """A property's verdict."""

    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


PASS, FAIL, UNKNOWN = Result.PASS, Result.FAIL, Result.UNKNOWN
CONFORMANCE_TOLERANCE_S = 0.1


@dataclass(frozen=True)
class Verdict:
    """One property's verdict with one line of evidence."""

    name: str
    verdict: Result
    detail: str
    world: str | None = None
    expected: bool = False  # a violation the scenario names in expect.violations
    worlds: tuple[str, ...] = ()  # every world with a problem (``world`` is the first)
    #: the kinds of evidence a violation has (no names: how a fuzzer tells bugs apart)
    evidence: tuple[str, ...] = ()
    at: float | None = None  # when its first problem was seen

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: v
            for k, v in asdict(self).items()
            if v is not None and k not in ("worlds", "evidence")
        }
        if len(self.worlds) > 1:
            out["worlds"] = list(self.worlds)
        if self.evidence:
            out["evidence"] = list(self.evidence)
        return out


class Evidence(NamedTuple):
    """One problem found by a property: the world (if any), one line saying what happened,
    its kind (the line without names or numbers that vary) and when it was seen."""

    world: str | None
    detail: str
    kind: str
    at: float | None = None


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


# -- reading a history --------------------------------------------------------------------


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
            detail = f"the controller ran {e.lag_s:.2f} s late at {_fmt(e.t)}"
            out.append(Lag(lo, e.t, None, detail))
        elif e.source == Source.AGENT and worker is not None:
            if any(x.t <= e.t and (x.end is None or x.end >= lo) for x in f.hangs.get(worker, [])):
                continue
            cpu = next((c for a, b, c in busy if a < e.t and lo < b), None)
            if cpu is not None:
                detail = (
                    f"agent {worker}'s event loop ran {e.lag_s:.2f} s late at {_fmt(e.t)} "
                    f"while the CPU was saturated ({cpu.get('detail', 'busy')})"
                )
                out.append(Lag(lo, e.t, worker, detail))
    return out


def _lagged(f: Facts, members: Sequence[str], a: float, b: float, over: float) -> str | None:
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


# -- shared reasoning ---------------------------------------------------------------------


def _faults_of(f: Facts, life: WorldLife) -> list[Injected]:
    """Faults that hit ``life``: the one that ended it, and hangs/slows of its members."""
    out = []
    for index in {s.event for s in life.spans} | {life.end_event}:
        if index is not None and index in f.faults:
            out.append(f.faults[index])
    return sorted(out, key=lambda x: x.t)


def _unexpected_exits(f: Facts, life: WorldLife) -> list[float]:
    """When members of ``life`` died unasked (an initial world's: from bring-up on)."""
    since = life.start if life.origin is not None else float("-inf")
    return [
        t for m in life.members for t, expected in f.died.get(m, []) if not expected and t >= since
    ]


def _formed_at(f: Facts, life: WorldLife) -> float | None:
    if life.origin is None:
        return 0.0
    joined = f.joined.get(life.id, {})
    if not all(m in joined for m in life.members):
        return None
    return max(joined[m] for m in life.members)


def _recover_bound(f: Facts, outage: Injected) -> float:
    """How soon after a heal a world nobody flagged must serve again."""
    assert outage.end is not None
    if f.bounds.recover_within_s is not None:
        return f.bounds.recover_within_s
    return f.model.recovery_bound(outage.end - outage.t, f.scenario.workload.interval_s)


def _outages(f: Facts, life: WorldLife) -> list[tuple[Injected, float | None]]:
    """Faults that stop ``life`` without ending it (a member hung, a partition cutting it),
    each with when the world may serve again (None: never: not healed, or reset)."""
    out: list[tuple[Injected, float | None]] = []
    for x in _faults_of(f, life):
        ev = x.step.event
        if not ev.info.breaks or ev.info.ends:
            continue
        back = x.end
        if x.step.kind is Kind.PARTITION and back is not None:
            back = None if not ev.silent else back + _recover_bound(f, x)
        out.append((x, back))
    return out


def healthy_segments(f: Facts, life: WorldLife) -> list[tuple[float, float]]:
    """Stretches of time in which ``life`` has joined, no member is faulty and no cut
    separates its members (nor is it still recovering from one)."""
    start = _formed_at(f, life)
    if start is None:
        return []
    end = f.end
    if life.end is not None:
        end = min(end, f.faults[life.end_event].t if life.end_event in f.faults else life.end)
    end = min([end, *_unexpected_exits(f, life)])
    reported = bool(f.reports.get(life.id))
    out, cursor = [], start
    for outage, back in _outages(f, life):
        if outage.t >= end:
            break
        if outage.t > cursor:
            out.append((cursor, outage.t))
        if back is None or reported:  # never back, or the world was flagged for good
            return out
        cursor = max(cursor, back)
    if cursor < end:
        out.append((cursor, end))
    return out


def _slow_allowance(f: Facts, life: WorldLife, a: float, b: float) -> float:
    """Extra gap allowed while a member of the world is slowed or its link degraded."""
    extra = 0.0
    for x in _faults_of(f, life):
        ev = x.step.event
        if x.t >= b or (x.end is not None and x.end <= a):
            continue
        if isinstance(ev, Slow):
            extra = max(extra, ev.delay_ms / 1000)
        elif isinstance(ev, GpuSlow):  # each op's GPU work takes factor times longer
            work = f.scenario.workload.interval_s + f.model.op_latency_s
            extra = max(extra, (ev.factor - 1) * work)
        elif isinstance(ev, Degrade):
            extra = max(extra, _degrade_allowance(f, ev))
    return extra


def _degrade_allowance(f: Facts, ev: Degrade) -> float:
    """A degraded link delays round trips by its delay and jitter (an op may wait for two),
    loses packets that TCP resends after a backed-off timeout, and takes time to carry a
    tensor."""
    extra = 2 * ((ev.delay_ms or 0.0) + (ev.jitter_ms or 0.0)) / 1000
    if ev.loss_pct:
        extra += 8 * f.model.rto_min_s
    if ev.rate_mbit:
        extra += 2 * f.scenario.workload.tensor_bytes * 8 / (ev.rate_mbit * 1e6)
    return extra


def _fmt(t: float) -> str:
    return f"{t:.2f} s"


def _summary(name: str, problems: list[Evidence], ok: str, unknown: Sequence[str] = ()) -> Verdict:
    """Fail with the first problem (and how many more); else unknown with the first reason
    for doubt; else pass with ``ok``."""
    if not problems:
        return Verdict(name, UNKNOWN, unknown[0]) if unknown else Verdict(name, PASS, ok)
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    worlds = tuple(dict.fromkeys(p.world for p in problems if p.world is not None))
    kinds = tuple(dict.fromkeys(p.kind for p in problems))
    return Verdict(
        name, FAIL, first.detail + more, first.world, worlds=worlds, evidence=kinds, at=first.at
    )


# -- the properties -----------------------------------------------------------------------


def check_progress(f: Facts) -> Verdict:
    window = f.bounds.progress_window_s
    problems: list[Evidence] = []
    excused: list[str] = []
    judged = 0
    stall = "no op while healthy"
    _bringup_stalls(f, problems, excused)
    for life in f.plan.worlds:
        segs = [s for series in f.ops.get(life.id, {}).values() for s in series]
        segs.sort(key=lambda s: s.t0)
        if not segs and _never_served(f, life, window, problems, excused):
            continue
        for a, b in healthy_segments(f, life):
            if b - a <= 0:
                continue
            judged += 1
            last = a
            for seg in segs:
                if seg.t1 < a or seg.t0 > b:
                    continue
                for gap_start, gap_end in ((last, seg.t0), (seg.t0, seg.t0 + seg.period)):
                    if gap_end > b or gap_end <= gap_start:
                        continue
                    allowed = window + _slow_allowance(f, life, gap_start, gap_end)
                    if gap_end - gap_start > allowed:
                        what = _gap(life.name, gap_start, gap_end, allowed)
                        gap = Evidence(life.name, what, stall, gap_start)
                        over = gap_end - gap_start - allowed
                        during = (gap_start, gap_end)
                        _judge_or_excuse(f, life, during, over, gap, problems, excused)
                last = max(last, min(seg.t1, b))
            allowed = window + _slow_allowance(f, life, last, b)
            if b - last > allowed:
                gap = Evidence(life.name, _gap(life.name, last, b, allowed), stall, last)
                _judge_or_excuse(f, life, (last, b), b - last - allowed, gap, problems, excused)
    return _summary(
        "progress",
        problems,
        f"{judged} healthy stretch(es) of worlds completed an op in every {window:g} s window",
        excused,
    )


def _bringup_stalls(f: Facts, problems: list[Evidence], excused: list[str]) -> None:
    """Worlds that did not form while bring-up stalled (nothing moved for ``stalled_s``):
    each a problem, unless the harness fell behind for that whole stall."""
    e = f.bringup
    if e is None or e.stage != Stage.FORM or e.stalled_s is None:
        return
    stalled = e.stalled_s
    for name in e.waiting or ():
        life = next((w for w in f.plan.worlds if w.name == name and w.origin is None), None)
        if life is None:
            continue
        what = f"{name}: not formed at bring-up; nothing moved for {stalled:g} s ({e.reason})"
        problem = Evidence(name, what, "not formed at bring-up", e.t)
        _judge_or_excuse(f, life, (e.t - stalled, e.t), stalled, problem, problems, excused)


def _never_served(
    f: Facts, life: WorldLife, window: float, problems: list[Evidence], excused: list[str]
) -> bool:
    """An initial world that formed and never served an op before bring-up gave up on it:
    a problem (or excused by the harness's lag); whether it was judged here."""
    e = f.bringup
    if e is None or e.stage != Stage.SERVE or life.name not in (e.waiting or ()):
        return False
    healthy = healthy_segments(f, life)
    if life.origin is not None or not healthy or healthy[0][1] - healthy[0][0] <= window:
        return False  # it had no whole window to serve in (say, a member died first)
    a, b = healthy[0]
    what = (
        f"{life.name}: formed, then served no op in the {b - a:.2f} s bring-up waited for "
        f"one (window {window:g} s)"
    )
    problem = Evidence(life.name, what, "never served after forming", a)
    _judge_or_excuse(f, life, (a, b), b - a - window, problem, problems, excused)
    return True


def _judge_or_excuse(
    f: Facts,
    life: WorldLife,
    during: tuple[float, float],
    over: float,
    problem: Evidence,
    problems: list[Evidence],
    excused: list[str],
) -> None:
    """A timing violation of ``life``, ``over`` seconds past its bound ``during`` that
    stretch: a problem, or (unknown) excused if the harness fell behind about as long."""
    why = _lagged(f, life.members, *during, over)
    if why is None:
        problems.append(problem)
    else:
        excused.append(f"{problem.detail}: not judged, {why}")


def _gap(world: str, a: float, b: float, allowed: float) -> str:
    return f"{world}: no op from {_fmt(a)} to {_fmt(b)} while healthy (window {allowed:g} s)"


def _free_at(f: Facts, worker: str, since: float) -> float | None:
    """When ``worker`` can look at ``since``: then, or when its own hang ends (None: never)."""
    for x in f.hangs.get(worker, []):
        if x.t <= since:
            if x.end is None:
                return None
            if x.end > since:
                return x.end
    return since


def _alive_until(f: Facts, worker: str, since: float) -> float:
    """When ``worker`` stopped being able to report, after ``since`` (its exit or a hang)."""
    times = [t for t, _ in f.died.get(worker, []) if since <= t < f.end]
    times += [x.t for x in f.hangs.get(worker, []) if x.t > since]
    return min(times, default=float("inf"))


def _cut_off(
    f: Facts, life: WorldLife, rank: int, others: list[int], since: float
) -> Injected | None:
    """A dropping partition in force at ``since`` that cuts member ``rank`` of ``life`` off
    from one of ``others``: nothing of theirs reaches it (not even a reset) until the heal."""
    me, them = life.members[rank], {life.members[o] for o in others}
    for x in f.cuts:
        if x.t > since or (x.end is not None and x.end <= since):
            continue
        if them & set(x.step.cut.get(life.name, {}).get(me, [])):
            return x
    return None


def _bound(f: Facts, life: WorldLife, fault: Injected, rank: int, others: list[int]) -> float:
    """How soon member ``rank`` must notice the loss of ranks ``others``. Cut off from them
    by a partition, it sees a loud fault only as the watchdog does, or once the cut heals
    and TCP sends again (whichever is later: either may be first)."""
    kind = fault.step.kind
    if kind in f.bounds.detect_within_s:
        return f.bounds.detect_within_s[kind]
    workload, interval = f.scenario.workload.kind, f.scenario.workload.interval_s

    def bound(silent: bool) -> float:
        return min(
            detection_window(f.model, workload, interval, silent, rank, other).hi
            for other in others
        )

    ev = fault.step.event
    silent = ev.silent_to(f.plan.worker(life.members[rank], fault.t).host)
    cut = None if silent else _cut_off(f, life, rank, others, fault.t)
    if cut is None:
        return bound(silent)
    if cut.end is None:
        return bound(True)
    healed = cut.end - fault.t + f.model.resume_after(cut.end - cut.t) + bound(False)
    return max(bound(True), healed)


@dataclass
class _Need:
    life: WorldLife
    survivor: str
    fault: Injected
    deadline: float


def _detection_needs(f: Facts) -> tuple[list[_Need], list[str]]:
    """Every (world, survivor) that must report, with its deadline; plus why some are unknown."""
    needs: dict[tuple[WorldId, str], _Need] = {}
    unknown: list[str] = []
    for life in f.plan.worlds:
        for fault in _faults_of(f, life):
            ev = fault.step.event
            if ev.kind not in BREAKING or fault.t >= f.end:
                continue
            if fault.incomplete:
                continue  # the leave did not happen: judged by scale_out
            if not fault.confirmed:
                unknown.append(f"{ev.kind} of {ev.subject} at {_fmt(fault.t)} was not confirmed")
                continue
            formed = _formed_at(f, life)
            if formed is None or formed > fault.t:
                continue  # never formed: nobody was waiting on the faulty member
            # a fault nobody notices by design (a GPU hang) is due only where expect asks
            demanded = ev.info.noticed == "none" and ev.kind in f.bounds.detect_within_s
            who = "peers" if demanded else None
            for rank, others in failing_peers(fault.step, life, who).items():
                survivor = life.members[rank]
                free = _free_at(f, survivor, fault.t)  # a hung survivor looks once back
                if free is None or not others:
                    continue
                deadline = free + _bound(f, life, fault, rank, others)
                passing = ev.silent and not ev.info.ends  # a hang, a dropping partition
                if passing and fault.end is not None and fault.end < deadline:
                    continue  # back before the bound: a report is allowed, not required
                if _alive_until(f, survivor, fault.t) < deadline:
                    continue  # the survivor itself went down first
                key = (life.id, survivor)
                if key not in needs or deadline < needs[key].deadline:
                    needs[key] = _Need(life, survivor, fault, deadline)
    return list(needs.values()), unknown


def check_detection(f: Facts) -> Verdict:
    needs, unknown = _detection_needs(f)
    problems: list[Evidence] = []
    late_unknown: list[str] = []
    for need in needs:
        report = f.reports.get(need.life.id, {}).get(need.survivor)
        ev = need.fault.step.event
        what = f"{ev.kind} of {ev.subject} at {_fmt(need.fault.t)}"
        bound = need.deadline - need.fault.t
        if report is not None and report.t <= need.deadline:
            continue
        if report is None and need.deadline > f.end:
            late_unknown.append(f"{need.life.name}: the run ended before the {bound:.2f} s bound")
            continue
        seen = "never did" if report is None else f"reported it at {_fmt(report.t)}"
        problem = Evidence(
            need.life.name,
            f"{need.life.name}: {need.survivor} did not report it broken within "
            f"{bound:.2f} s of the {what}; it {seen}",
            f"{ev.kind} {'never reported' if report is None else 'reported late'}",
            need.deadline,
        )
        seen_at = report.t if report is not None else f.end
        during, over = (need.fault.t, seen_at), seen_at - need.deadline
        _judge_or_excuse(f, need.life, during, over, problem, problems, late_unknown)
    ok = f"{len(needs)} required report(s) of broken worlds, all in time"
    return _summary("detection", problems, ok, unknown + late_unknown)


def _first_fault_at(f: Facts, life: WorldLife) -> float | None:
    times = [x.t for x in _faults_of(f, life) if x.step.kind in BREAKING]
    times += _unexpected_exits(f, life)
    return min(times, default=None)


def check_no_false_alarm(f: Facts) -> Verdict:
    problems: list[Evidence] = []
    excused: list[str] = []
    # the watchdog flags a peer silent for its lower bound; a stall that long in the upper
    # bound before a report may have caused it
    silence, look_back = f.model.watchdog_window()
    count = 0
    for world_id, by_worker in f.reports.items():
        life = f.plan.world(world_id)
        first = _first_fault_at(f, life)
        for worker, report in by_worker.items():
            if report.t > f.end:
                continue
            count += 1
            if first is None or report.t < first:
                how = ""
                if report.raised is not None:  # the runtime's failure signal
                    how = f" ({report.op or 'an op'} raised {report.raised})"
                problem = Evidence(
                    life.name,
                    f"{life.name}: {worker} reported it broken at {_fmt(report.t)} "
                    f"while no member was faulty{how}",
                    "reported broken while healthy",
                    report.t,
                )
                t = report.t
                _judge_or_excuse(f, life, (t - look_back, t), silence, problem, problems, excused)
    ok = f"all {count} broken report(s) followed a fault"
    return _summary("no_false_alarm", problems, ok, excused)


def _healthy_over(segments: list[tuple[float, float]], a: float, b: float) -> bool:
    return any(s <= a and b <= e for s, e in segments)


def check_integrity(f: Facts) -> Verdict:
    problems: list[Evidence] = []
    total = 0
    for world_id, streams in f.ops.items():
        life = f.plan.world(world_id)
        healthy = healthy_segments(f, life)
        formed = _formed_at(f, life) or life.start
        for (worker, peer), segs in streams.items():
            source = f" from {peer}" if peer else ""
            expected, last_t = 0, formed
            for seg in segs:
                total += seg.n
                where = f"{life.name}: op {seg.first} at {worker}{source} at {_fmt(seg.t0)}"
                if not seg.ok:
                    problems.append(
                        Evidence(life.name, f"{where} carried wrong data", "wrong data", seg.t0)
                    )
                elif seg.first < expected:
                    problems.append(
                        Evidence(
                            life.name,
                            f"{where} is a duplicate or out of order",
                            "duplicate or out of order",
                            seg.t0,
                        )
                    )
                elif seg.first > expected and _healthy_over(healthy, last_t, seg.t0):
                    lost = f"{expected}" + (
                        f"..{seg.first - 1}" if seg.first - 1 > expected else ""
                    )
                    problems.append(
                        Evidence(
                            life.name,
                            f"{where}: op(s) {lost} lost while healthy",
                            "lost while healthy",
                            seg.t0,
                        )
                    )
                expected = max(expected, seg.first + seg.n)
                last_t = seg.t1
    return _summary("integrity", problems, f"{total} op(s) carried the right data, in order")


def check_scale_out(f: Facts) -> Verdict:
    """New worlds serve in time, and the runtime completes every leave and world removal."""
    problems: list[Evidence] = []
    unknown: list[str] = []
    judged = new = 0
    for life in f.plan.worlds:
        if life.origin is None or life.origin_event is None:
            continue
        new += 1
        bound = f.bounds.join_within_s or (
            f.model.join_bound_s if life.origin is Kind.JOIN else f.model.add_world_bound_s
        )
        asked = f.scaled.get(life.origin_event, life.start)
        if _hung_within(f, life, asked, asked + bound) or _cut_within(
            f, life, asked, asked + bound
        ):
            continue  # a member could not do its part (a cut world: recovery judges it)
        streams = f.ops.get(life.id, {})
        first = min((s.t0 for series in streams.values() for s in series), default=None)
        ended = life.end if life.end is not None else f.end
        if first is None:
            if ended < asked + bound and ended < f.end:
                continue  # ended by a fault or removal before it was due
            if asked + bound > f.end:
                unknown.append(f"{life.name}: the run ended before the {bound:g} s bound")
                continue
        judged += 1
        if first is None or first - asked > bound:
            seen = "none at all" if first is None else f"the first at {_fmt(first)}"
            problem = Evidence(
                life.name,
                f"{life.name}: no op within {bound:g} s of the {life.origin} at "
                f"{_fmt(asked)} ({seen})",
                f"no op in time after {life.origin}",
                asked + bound,
            )
            seen_at = first if first is not None else f.end
            over = seen_at - asked - bound
            _judge_or_excuse(f, life, (asked, seen_at), over, problem, problems, unknown)
    leaves = _incomplete_leaves(f, problems)
    removals = _incomplete_removals(f, problems, unknown)
    if judged:
        ok = f"{judged} new world(s) served their first op in time"
    elif new:
        ok = f"{new} new world(s), none due to serve in the judged interval (ended or hung first)"
    else:
        ok = "no world joined or was added"
    if leaves or removals:
        ok += f"; {leaves} leave(s) and {removals} world removal(s) completed"
    return _summary("scale_out", problems, ok, unknown)


def _incomplete_leaves(f: Facts, problems: list[Evidence]) -> int:
    """A leave the runtime did not complete (its process did not exit 0 in time) is a
    problem; the number of leaves judged."""
    judged = 0
    for x in f.faults.values():
        if x.step.kind is not Kind.LEAVE or x.t >= f.end or not (x.confirmed or x.delivered):
            continue
        judged += 1
        if x.incomplete:
            if x.code is None:
                within = x.step.event.info.confirm_within_s
                how = f"its process was still running {within:g} s later"
            elif x.code < 0:
                how = f"its process was killed by signal {-x.code}"
            else:
                how = f"its process exited with code {x.code}"
            worker = x.step.event.subject
            detail = f"{worker}'s leave at {_fmt(x.t)} did not complete: {how}"
            problems.append(Evidence(None, detail, "leave not completed", x.t))
    return judged


def _incomplete_removals(f: Facts, problems: list[Evidence], unknown: list[str]) -> int:
    """Every member of a removed world must record leaving it within the bound (unless it
    went down first, or the world was cut off or flagged: then it waits for its workload);
    the number of removals judged."""
    judged = 0
    interval = f.scenario.workload.interval_s
    for step in f.plan.steps:
        if step.kind is not Kind.REMOVE_WORLD or step.index not in f.scaled:
            continue
        asked = f.scaled[step.index]
        life = next((w for w in f.plan.worlds if w.end_event == step.index), None)
        if life is None or asked >= f.end:
            continue
        in_force = any(
            x.t <= asked and (back is None or back > asked) for x, back in _outages(f, life)
        )
        if f.reports.get(life.id) or in_force:
            continue  # flagged, or cut off or stopped: its workload waits, not the removal
        bound = f.model.remove_bound_s + 2 * interval
        due = asked + bound
        if due > f.end:
            unknown.append(f"{life.name}: the run ended before the {bound:g} s removal bound")
            continue
        if _hung_within(f, life, asked, due):
            continue
        judged += 1
        left = f.left.get(life.id, {})
        for member in life.members:
            if _alive_until(f, member, asked) < due:
                continue
            t = left.get(member)
            if t is None or t > due:
                seen = "never did" if t is None else f"it did at {_fmt(t)}"
                detail = (
                    f"{life.name}: {member} did not complete remove_world within {bound:g} s "
                    f"of {_fmt(asked)}; {seen}"
                )
                problems.append(Evidence(life.name, detail, "remove_world not completed", due))
    return judged


def _cut_within(f: Facts, life: WorldLife, a: float, b: float) -> bool:
    """Did a partition cut ``life`` at some time in ``[a, b]`` (until it may serve again)?"""
    return any(
        x.step.kind is Kind.PARTITION and x.t <= b and (back is None or back >= a)
        for x, back in _outages(f, life)
    )


def _hung_within(f: Facts, life: WorldLife, a: float, b: float) -> bool:
    """Was a member of ``life`` hung at some time in ``[a, b]``?"""
    return any(
        x.t <= b and (x.end is None or x.end >= a)
        for member in life.members
        for x in f.hangs.get(member, [])
    )


def check_recovery(f: Facts) -> Verdict:
    """After a partition heals or a degraded link is repaired, every world it hit that was
    not reported broken serves again within the bound the outage implies."""
    problems: list[Evidence] = []
    unknown: list[str] = []
    judged = 0
    for life in f.plan.worlds:
        for x in _faults_of(f, life):
            if not (x.step.event.info.network and x.step.event.info.lasting):
                continue
            if x.end is None or not x.confirmed or x.end >= f.end:
                continue  # never healed (in the judged interval)
            healed, bound = x.end, _recover_bound(f, x)
            if f.reports.get(life.id) or (life.end is not None and life.end < healed + bound):
                continue  # flagged broken, or gone: nothing to recover
            if any(
                y is not x
                and y.step.event.info.breaks
                and y.t < healed + bound
                and (y.end is None or y.end > healed)
                for y in _faults_of(f, life)
            ):
                continue  # another outage holds the world (a new cut, a hung member)
            bound += _slow_allowance(f, life, healed, healed + bound)
            ops = [s for series in f.ops.get(life.id, {}).values() for s in series]
            first = min((max(s.t0, healed) for s in ops if s.t1 >= healed), default=None)
            if first is None and healed + bound > f.end:
                unknown.append(f"{life.name}: the run ended before the {bound:.2f} s bound")
                continue
            judged += 1
            if first is None or first - healed > bound:
                seen = "none at all" if first is None else f"the first at {_fmt(first)}"
                what = f"{x.step.kind} of {x.step.event.subject} healed at {_fmt(healed)}"
                problem = Evidence(
                    life.name,
                    f"{life.name}: no op within {bound:.2f} s after the {what} ({seen})",
                    f"no op after the {x.step.kind} ended",
                    healed + bound,
                )
                seen_at = first if first is not None else f.end
                over = seen_at - healed - bound
                _judge_or_excuse(f, life, (healed, seen_at), over, problem, problems, unknown)
    ok = f"{judged} world(s) served again in time after a heal"
    none = "no partition healed and no link was repaired"
    return _summary("recovery", problems, ok if judged else none, unknown)


def check_hygiene(f: Facts) -> Verdict:
    if f.hygiene is None:
        return Verdict("hygiene", UNKNOWN, "the history has no hygiene record")
    detail = f.hygiene.detail or ""
    if f.hygiene.ok:
        return Verdict("hygiene", PASS, detail or "clean")
    return Verdict("hygiene", FAIL, detail, evidence=("left behind",), at=f.hygiene.t)


def _targets(f: Facts, worker: str, t: float) -> bool:
    """Did a fault act on ``worker``'s process by ``t`` (its death may follow from it)?
    Faults on links (partitions, degraded links) act on no process."""
    for x in f.faults.values():
        info = x.step.event.info
        acts = info.target in (Target.WORKER, Target.HOST) and (info.ends or not info.network)
        if acts and x.t <= t and worker in x.step.workers:
            return True
    return False


def check_survival(f: Facts) -> Verdict:
    """A worker no fault targeted does not exit or die while the run is judged."""
    problems: list[Evidence] = []
    for e, last in f.unexpected:
        worker = e.worker
        if e.t > f.end or _targets(f, worker, e.t):
            continue
        code = e.code
        if code is None:
            how = "ended"
        elif code < 0:
            how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        if last is None:
            before = "it had recorded nothing"
        else:
            world = getattr(last, "world", None)
            what = last.kind + (f" on {world}" if world else "")
            before = f"its last record: {what} at {_fmt(last.t)}"
        detail = f"{worker} {how} at {_fmt(e.t)} though no fault targeted it ({before})"
        problems.append(Evidence(None, detail, f"an untargeted worker {how}", e.t))
    return _summary(
        "survival", problems, "every worker no fault targeted lived through the judged interval"
    )


def check_errors(f: Facts) -> Verdict:
    """The runtime raises nothing but its failure signal (which, on a world no fault
    touched, is a false alarm: ``no_false_alarm`` judges it); an error the harness itself
    hit makes the verdict unknown."""
    problems: list[Evidence] = []
    doubts: list[str] = []
    for e in f.errors:
        if e.t > f.end:
            continue
        life = f.plan.resolve(e.world, e.life, e.t) if e.world else None
        world = life.name if life is not None else None
        who = e.worker or "the controller"
        if e.source == Source.RUNTIME:
            kind = f"{e.op or 'a call'} raised {e.exception or 'an exception'}"
            where = f" on {world}" if world else ""
            detail = f"{who}{where} at {_fmt(e.t)}: {e.message}"
            problems.append(Evidence(world, detail, kind, e.t))
        elif e.source == Source.HARNESS:
            doubts.append(f"the harness hit an error at {_fmt(e.t)} ({who}): {e.message}")
    ok = f"the runtime raised nothing but its failure signal ({len(f.raised)} time(s))"
    return _summary("errors", problems, ok, doubts)


CHECKS = {
    Property.PROGRESS: check_progress,
    Property.DETECTION: check_detection,
    Property.NO_FALSE_ALARM: check_no_false_alarm,
    Property.INTEGRITY: check_integrity,
    Property.SCALE_OUT: check_scale_out,
    Property.HYGIENE: check_hygiene,
    Property.RECOVERY: check_recovery,
    Property.SURVIVAL: check_survival,
    Property.ERRORS: check_errors,
}


def _unconfirmed(f: Facts) -> list[str]:
    return [
        f"{x.step.kind} of {x.step.event.subject} at {_fmt(x.t)} was not confirmed injected"
        for x in f.faults.values()
        if not x.confirmed and not x.incomplete and x.t < f.end
    ]


def bringup_cause(f: Facts) -> Cause | None:
    """Whose doing a failed bring-up was (None: the deployment came up). An unclear one is
    the harness's only if the reference runtime did not come up either."""
    if f.bringup is None:
        return None
    cause = Cause(f.bringup.cause)
    if cause is Cause.UNCLEAR:
        served = f.reference.served if f.reference is not None else None
        return Cause.HARNESS if served is False else Cause.RUNTIME
    return cause


def headline(text: str) -> str:
    """The first line of a multi-line reason (a log tail may follow it)."""
    return (text.strip().splitlines() or [""])[0].rstrip(":")


def bringup_failure(f: Facts) -> dict[str, Any] | None:
    """What a failed bring-up was, for reports: its stage, whose doing (decided), why, and
    what the reference runtime showed (None: the deployment came up)."""
    cause = bringup_cause(f)
    if f.bringup is None or cause is None:
        return None
    reason = f.bringup.reason
    out = {"stage": f.bringup.stage, "cause": str(cause), "reason": reason}
    out["headline"] = headline(reason)
    if f.reference is not None:
        out["reference"] = f.reference.detail or ""
    return out


def _not_the_runtimes(f: Facts) -> str:
    assert f.bringup is not None
    reason = headline(f.bringup.reason)
    if f.reference is not None and f.reference.served is False:
        return f"bring-up failed, and on the reference runtime too: {reason}; {f.reference.detail}"
    return f"bring-up failed by the harness's doing, not the runtime's: {reason}"


def evaluate(f: Facts) -> list[Verdict]:
    """Every property except conformance. A fault not confirmed injected turns a would-be
    pass into unknown; a bring-up the harness failed leaves every property unknown."""
    if bringup_cause(f) is Cause.HARNESS:
        why = _not_the_runtimes(f)
        return [Verdict(name, UNKNOWN, why) for name in CHECKS]
    verdicts = [fn(f) for fn in CHECKS.values()]
    doubts = _unconfirmed(f)
    if doubts:
        verdicts = [
            replace(v, verdict=UNKNOWN, detail=doubts[0]) if v.verdict == PASS else v
            for v in verdicts
        ]
    return verdicts


def check(history: History, scenario: Scenario, model: RuntimeModel | None = None) -> list[Verdict]:
    """``evaluate`` the facts of ``history``."""
    return evaluate(facts(history, scenario, model))


def check_conformance(
    observed: History, predicted: History, scenario: Scenario, model: RuntimeModel | None = None
) -> Verdict:
    """Same broken worlds, and each observed report inside the predicted window."""
    return conformance(facts(observed, scenario, model), facts(predicted, scenario, model))


def conformance(obs: Facts, pre: Facts) -> Verdict:
    """``check_conformance`` on the facts of the two histories."""
    if obs.bringup is not None:
        reason = headline(obs.bringup.reason)
        why = f"not compared: the real deployment did not come up ({reason})"
        return Verdict("conformance", UNKNOWN, why)
    problems: list[Evidence] = []
    tol = CONFORMANCE_TOLERANCE_S
    for world_id, by_worker in pre.reports.items():
        life = pre.plan.world(world_id)
        for worker, e in by_worker.items():
            lo, hi = e.window or (e.t, e.t)
            seen = obs.reports.get(world_id, {}).get(worker)
            if seen is None or seen.t > obs.end:
                if not e.optional and hi < obs.end:
                    problems.append(
                        Evidence(
                            life.name,
                            f"{life.name}: {worker} was predicted to report it broken in "
                            f"[{lo:.2f}, {hi:.2f}] s and did not",
                            "predicted report missing",
                            hi,
                        )
                    )
            elif not lo - tol <= seen.t <= hi + tol:
                problems.append(
                    Evidence(
                        life.name,
                        f"{life.name}: {worker} reported it broken at {_fmt(seen.t)}, outside "
                        f"the predicted [{lo:.2f}, {hi:.2f}] s",
                        "report outside its predicted window",
                        seen.t,
                    )
                )
    for world_id, by_worker in obs.reports.items():
        life = obs.plan.world(world_id)
        for worker, e in by_worker.items():
            if e.t > obs.end or worker in pre.reports.get(world_id, {}):
                continue
            if _ambiguous_hang(obs, life, e.t):
                continue
            problems.append(
                Evidence(
                    life.name,
                    f"{life.name}: {worker} reported it broken at {_fmt(e.t)}; "
                    "the model predicts no report",
                    "report the model does not predict",
                    e.t,
                )
            )
    broken = sum(1 for by in obs.reports.values() if by)
    return _summary(
        "conformance", problems, f"{broken} broken world(s) and their reports as predicted"
    )


def _ambiguous_hang(f: Facts, life: WorldLife, t: float) -> bool:
    """Was a member of ``life`` hung, or the world cut silently, around ``t`` (a report
    then may or may not come)?"""
    lo, hi = f.model.watchdog_window()
    return any(
        x.step.event.silent
        and not x.step.event.info.ends
        and x.t + lo - CONFORMANCE_TOLERANCE_S <= t
        and (x.end is None or t <= x.end + hi)
        for x in _faults_of(f, life)
    )


def expected_violations(scenario: Scenario, mode: str) -> set[str]:
    """Properties this run must violate: the scenario's ``expect.violations`` as they apply
    to a mode. The simulator models a correct runtime, so it is expected to violate none."""
    wanted = set(scenario.expect.violations)
    if mode == Mode.SIM:
        return set()
    if mode == Mode.REAL:
        return wanted - {Property.CONFORMANCE}
    return wanted


def judge(verdicts: list[Verdict], expected: set[str]) -> tuple[Result, list[Verdict]]:
    """Overall verdict: pass only if exactly the expected properties are violated and nothing
    else is in doubt. Expected violations are marked on their verdicts."""
    marked = [replace(v, expected=v.name in expected and v.verdict == FAIL) for v in verdicts]
    judged = {v.name for v in marked}
    failed = {v.name for v in marked if v.verdict == FAIL}
    missing = (expected & judged) - failed
    for name in sorted(missing):
        held = next(v for v in marked if v.name == name)
        if held.verdict == PASS:
            marked = [
                Verdict(
                    v.name,
                    FAIL,
                    f"expected to be violated, but it held: {v.detail}",
                    v.world,
                    evidence=("held though expected to be violated",),
                )
                if v.name == name
                else v
                for v in marked
            ]
    failed_now = {v.name for v in marked if v.verdict == FAIL and not v.expected}
    if failed_now:
        return FAIL, marked
    if any(v.verdict == UNKNOWN for v in marked):
        return UNKNOWN, marked
    return PASS, marked


def detections(f: Facts) -> list[dict[str, Any]]:
    """Each reported broken world with the fault it followed and the latency."""
    out = []
    for world_id, by_worker in sorted(f.reports.items(), key=lambda kv: f.plan.row(kv[0])):
        life = f.plan.world(world_id)
        faults = [x for x in _faults_of(f, life) if x.step.kind in BREAKING]
        for worker, e in sorted(by_worker.items(), key=lambda kv: kv[1].t):
            if e.t > f.end:
                continue
            before = [x for x in faults if x.t <= e.t]
            record: dict[str, Any] = {"world": life.name, "worker": worker}
            if before:
                record["fault"] = before[0].step.kind.value
                record["latency_s"] = round(e.t - before[0].t, 4)
            else:
                record["fault"] = None
                record["latency_s"] = None
            out.append(record)
    return out


def violated_pairs(verdicts: list[Verdict]) -> set[tuple[str, str | None]]:
    """(property, world) for every world a failed property names."""
    return {(v.name, w) for v in verdicts if v.verdict == FAIL for w in (v.worlds or (v.world,))}


def broken_worlds(f: Facts) -> list[str]:
    return sorted({world_id.name for world_id, by in f.reports.items() if by})
