"""Shrinking a real failure by replay. On real processes each shrink step is a whole
deployment, so ``minimize`` drops events one at a time, keeping each drop whose replay
shows the same (property, kind of evidence) again, on any world, and runs into no known
finding the original did not, until no single event can go; the run is kept long enough
for the failure's own timing. A failure whose first replay does not show it again is
*flaky*. No replay starts that would not end within the budget."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from mwsim.checks import FAIL, PASS, Verdict
from mwsim.findings import KnownFinding, findings_in
from mwsim.fuzz.budget import Budget
from mwsim.fuzz.signatures import Sig, Violation, save_failure, signature
from mwsim.history import Mode
from mwsim.replay.zygote import Zygote
from mwsim.runs import REFERENCE, run_scenario
from mwsim.scenario import Property, Scenario, plan_problems
from mwsim.timing import judged_end

#: A shrunk run lasts at least this long past the moment its failure was first seen.
FAILURE_TAIL_S = 1.0


class _NoTime(Exception):
    """A replay would not end within the session's budget (so it is not started)."""


#: What a failure's note says when the budget left something undone.
UNCONFIRMED = "not replayed: the budget ran out first (unconfirmed, unshrunk)"


UNSHRUNK = "not shrunk to the end: the budget ran out"


UNCHECKED = "not checked against the reference: the budget ran out"


INTERRUPTED = "interrupted before it was shrunk"


def replay(
    scenario: Scenario,
    out: Path,
    zygote: Zygote | None = None,
    both: bool = False,
    reference: str | None = REFERENCE,
    cluster: str | None = None,
) -> list[Verdict]:
    """Replay ``scenario`` for real (and on the model with ``both``); its verdicts."""
    mode = Mode.BOTH if both else Mode.REAL
    outcome = run_scenario(
        scenario, mode=mode, out_dir=out, zygote=zygote, reference=reference, cluster=cluster
    )
    return outcome.verdicts


def replay_violates(
    scenario: Scenario,
    wanted: set[Sig],
    out: Path,
    zygote: Zygote | None = None,
    reference: str | None = REFERENCE,
    cluster: str | None = None,
) -> list[Verdict] | None:
    """Replay ``scenario``; its verdicts if one of the ``wanted`` (property, kind of
    evidence) pairs shows again, on any world."""
    both = any(name == Property.CONFORMANCE for name, _ in wanted)
    verdicts = replay(scenario, out, zygote, both, reference, cluster)
    return verdicts if signature(verdicts) & wanted else None


def failure_time(violation: Violation, wanted: Sig) -> float:
    """When the run must last to: the ``wanted`` problem was first seen then (plus a tail)."""
    seen = [v.at for v in violation.verdicts if v.name == wanted[0] and v.at is not None]
    return min(max(seen, default=0.0) + FAILURE_TAIL_S, violation.scenario.duration_s)


def minimize(
    violation: Violation,
    out: Path,
    zygote: Zygote | None = None,
    log: Callable[[str], None] = lambda _: None,
    reference: str | None = None,
    wanted: Sig | None = None,
    known: KnownFinding | None = None,
    budget: Budget = Budget(),
    cluster: str | None = None,
) -> Violation | None:
    """Shrink a real violation by replay to a 1-minimal list of events (see the module doc);
    None when its first replay does not show the ``wanted`` pair again (flaky). ``wanted``
    defaults to the first of its signature.

    A step is taken only if the same (property, kind of evidence) shows again and the
    candidate runs into no ``known`` finding the original did not. With ``reference``, the
    result must be the runtime's own: the reference runtime must not show it. That is
    checked once at the end; only if the reference shows the shrunk scenario's failure too
    is the shrinking redone, checking the reference at every step. The verdicts returned
    leave out what the reference shows as well. No replay is started that would not end
    within the ``budget``: what could not be done then is said in the result's ``note``.
    """
    target = wanted or min(violation.signature)
    goal = {target}
    runs = itertools.count()
    before = set(findings_in(violation.scenario, known)) if known else set()
    until = failure_time(violation, target)

    def afford(candidate: Scenario) -> None:
        if not budget.fits(candidate):
            raise _NoTime

    def ours(candidate: Scenario) -> list[Verdict] | None:
        if known and set(findings_in(candidate, known)) - before:
            return None  # it slid onto a known finding
        afford(candidate)
        where = out / "shrink" / str(next(runs))
        return replay_violates(candidate, goal, where, zygote, reference, cluster)

    def theirs(candidate: Scenario) -> frozenset[Sig]:
        assert reference is not None
        afford(candidate)
        upstream = candidate.model_copy(update={"runtime": reference})
        both = target[0] == Property.CONFORMANCE
        where = out / "shrink" / str(next(runs))
        return signature(replay(upstream, where, zygote, both, cluster=cluster))

    def only_ours(candidate: Scenario) -> list[Verdict] | None:
        got = ours(candidate)
        if got is None or (reference and target in theirs(candidate)):
            return None
        return got

    try:
        verdicts = ours(violation.scenario)
    except _NoTime:
        return Violation(
            violation.scenario, violation.verdicts, violation.path, UNCONFIRMED, mode=violation.mode
        )
    if verdicts is None:
        return None
    current, verdicts, complete = _shrink(violation.scenario, verdicts, ours, log, until)
    notes = [] if complete else [UNSHRUNK]
    if reference:
        try:
            shown = theirs(current)
            if target in shown:
                log(f"{reference} fails the shrunk scenario too; shrinking again against it")
                first = violation.scenario
                current, verdicts, complete = _shrink(first, verdicts, only_ours, log, until)
                notes = [] if complete else [UNSHRUNK]
                shown = theirs(current)
        except _NoTime:
            shown = frozenset()
            notes.append(UNCHECKED)
        mine = signature(verdicts) - shown
        verdicts = [only(v, mine) for v in verdicts]
    path = save_failure(current, verdicts, violation.path, "shrunk by replay")
    return Violation(current, verdicts, path, "; ".join(notes), mode=violation.mode)


def _shrink(
    current: Scenario,
    verdicts: list[Verdict],
    fails: Callable[[Scenario], list[Verdict] | None],
    log: Callable[[str], None],
    until: float = 0.0,
) -> tuple[Scenario, list[Verdict], bool]:
    """Drop events one at a time while ``fails`` still holds, until none can go; whether it
    got there (False: the budget could not pay for another replay)."""
    changed = True
    while changed:
        changed = False
        for i in reversed(range(len(current.events))):
            candidate = _without(current, i, until)
            if candidate is None:
                continue  # a later event needs this one (say, a join)
            try:
                got = fails(candidate)
            except _NoTime:
                return current, verdicts, False
            if got is not None:
                log(f"shrunk to {len(candidate.events)} event(s)")
                current, verdicts, changed = candidate, got, True
    return current, verdicts, True


def _without(scenario: Scenario, index: int, until: float = 0.0) -> Scenario | None:
    """The scenario without event ``index`` (None: that is impossible), lasting until its
    bounds are due, and at least ``until`` (no longer than it did)."""
    events = scenario.events[:index] + scenario.events[index + 1 :]
    candidate = scenario.model_copy(update={"events": events})
    if plan_problems(candidate):
        return None
    duration = min(scenario.duration_s, max(judged_end(candidate), until))
    return candidate.model_copy(update={"duration_s": round(duration, 3)})


def only(verdict: Verdict, mine: frozenset[Sig]) -> Verdict:
    """A failed verdict kept only for the kinds of evidence that are the runtime's own."""
    if verdict.verdict != FAIL:
        return verdict
    kinds = tuple(k for k in (verdict.evidence or ("",)) if (verdict.name, k) in mine)
    if not kinds:
        return replace(verdict, verdict=PASS, detail="the reference runtime fails it too")
    return replace(verdict, evidence=kinds if verdict.evidence else ())
