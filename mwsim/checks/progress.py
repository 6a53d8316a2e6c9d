"""**progress**: every healthy world completes an op in every progress window."""

from __future__ import annotations

from mwsim.checks.index import Facts
from mwsim.checks.reasoning import healthy_segments, judge_or_excuse, slow_allowance
from mwsim.checks.verdicts import PASS, Evidence, Verdict, fmt, summary
from mwsim.history import Stage
from mwsim.membership import WorldLife
from mwsim.scenario import Property

NAME = Property.PROGRESS


def check(f: Facts) -> Verdict:
    if f.scenario.workload.kind == "serve":  # its ops come when requests are routed there
        why = "serve: a world's ops follow the requests routed to it (served, slo, goodput)"
        return Verdict(NAME, PASS, why)
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
                    allowed = window + slow_allowance(f, life, gap_start, gap_end)
                    if gap_end - gap_start > allowed:
                        what = _gap(life.name, gap_start, gap_end, allowed)
                        bound = (gap_start, gap_start + allowed)
                        gap = Evidence(life.name, what, stall, gap_start, bound)
                        over = gap_end - gap_start - allowed
                        during = (gap_start, gap_end)
                        judge_or_excuse(f, life, during, over, gap, problems, excused)
                last = max(last, min(seg.t1, b))
            allowed = window + slow_allowance(f, life, last, b)
            if b - last > allowed:
                what, bound = _gap(life.name, last, b, allowed), (last, last + allowed)
                gap = Evidence(life.name, what, stall, last, bound)
                judge_or_excuse(f, life, (last, b), b - last - allowed, gap, problems, excused)
    return summary(
        NAME,
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
        judge_or_excuse(f, life, (e.t - stalled, e.t), stalled, problem, problems, excused)


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
    judge_or_excuse(f, life, (a, b), b - a - window, problem, problems, excused)
    return True


def _gap(world: str, a: float, b: float, allowed: float) -> str:
    return f"{world}: no op from {fmt(a)} to {fmt(b)} while healthy (window {allowed:g} s)"
