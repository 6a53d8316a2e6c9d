"""The fuzzers: on the model, on live deployments (stateful), and both at once (differential),
and a session that reports every distinct bug it meets.

- ``check_model``: a drawn scenario's simulated history must satisfy every property (the
  model and the checks agree with each other; fast, many examples).
- ``LiveDeployment``: a Hypothesis state machine whose rules crash, hang, slow, join,
  add and remove worlds on a *live* deployment, with the properties as invariants after
  every step, and a teardown that must leave nothing behind.
- ``check_differential``: a drawn scenario run on the model and for real must pass and
  conform.

A failure's *signature* is the set of (property, kind of evidence) it shows: no world or
worker names, so the same bug on another world is the same failure. ``fuzz()`` runs the
fuzzers in batches until its budget is spent and keeps every distinct failure: an example
whose violations are all known already (*covered*) does not stop, so a bug that shows in
every example hides no other; each new failure is shrunk once and written under a unique
name with its report; and a failure that dominates (most examples hit it) has the kinds of
event that trigger it left out of every other batch (swarm-style), so rarer ones surface.

On the model Hypothesis shrinks a failure. On real processes each shrink step is a whole
deployment, so ``minimize`` shrinks by replay: it drops events one at a time, keeping each
drop whose replay shows the same (property, kind of evidence) again, on any world, and
runs into no known finding the original did not, until no single event can go; the run is
kept long enough for the failure's own timing. A live violation whose first replay does
not show it again is *flaky*: kept aside and the search goes on. Live examples steer clear
of races their outcome would hang on (a silent fault lasting about as long as the watchdog
takes to see it), and of the runtime's declared known findings (``Runtime.known_finding``);
a shrunk failure that still matches one is reported as that finding. Fuzzing a runtime
other than the reference (upstream MultiWorld), a violation counts only if the reference,
replaying the same scenario, does not show it too. A live deployment that does not come up
by the runtime's doing is a find like any other (with no events); by the harness's, the
batch is skipped.

The budget (``Budget``) bounds the whole session: a replay starts only if it would end
within it, the live example under way stops once it is spent (``OutOfBudget``), and a find
the budget left no time for is kept as it was, its ``note`` saying so. Ctrl-C and SIGTERM
stop a session the same way; its summary so far is returned and kept beside its finds.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import math
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as fix_seed
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    invariant,
    rule,
)

from mwsim import findings, report, runtimes
from mwsim.checks import FAIL, PASS, Verdict, check, judge
from mwsim.errors import BringUpFailed, Interrupted, MwsimError, PlanError
from mwsim.events import Kind, parse_event
from mwsim.findings import FIRST_HEARTBEAT_S, KnownFinding
from mwsim.history import Cause, Mode, read_history
from mwsim.hosts import emulated
from mwsim.internal import jsonout
from mwsim.membership import Timeline
from mwsim.replay import Controller, RunStatus
from mwsim.replay.controller import CLUSTER_ENV
from mwsim.replay.signals import TRAPPED
from mwsim.replay.zygote import Zygote
from mwsim.runs import REFERENCE, ask_reference, run_scenario
from mwsim.scenario import Property, Scenario, dump_scenario, parse_inline, plan_problems
from mwsim.sim import simulate
from mwsim.strategies import FUZZ_KINDS, Proposer, scenarios
from mwsim.timing import RuntimeModel, judged_end, model_for

#: A silent fault lasting within this of the watchdog's window is a race (reported or not).
RACE_MARGIN_S = 0.5

#: Live batches whose deployment did not come up, skipped, before fuzzing gives up.
MAX_BRINGUP_FAILURES = 3

#: A failure dominates once it was hit by at least this share of the examples since it was
#: found (and by two of them at least).
DOMINANT_SHARE = 0.5

#: A signature whose shrinking found it flaky this often is no longer pursued.
MAX_FLAKY = 2

#: A shrunk run lasts at least this long past the moment its failure was first seen.
FAILURE_TAIL_S = 1.0

#: What a replay takes beyond its scenario's duration (bring-up, wind-down, judging): a
#: replay is started only if it ends within the budget by this estimate.
REPLAY_OVERHEAD_S = 3.0

#: How far past its budget a session may end (README "Fuzzing"): the live step under way
#: and its teardown, or a replay that took longer than its estimate.
GRACE_S = 15.0

#: The live deployments the stateful fuzzer starts from (batch n uses variant n).
LIVE_BASES = (
    "topology: {generator: fan_in, workers: 3, hosts: 2}\nworkload: {kind: stream}\n",
    "topology: {generator: fan_in, workers: 2, hosts: 1}\nworkload: {kind: request}\n",
    "topology: {generator: pipeline, stages: [2], hosts: 2}\nworkload: {kind: stream}\n",
    "topology: {generator: fan_in, workers: 3, hosts: 1}\nworkload: {kind: allreduce}\n",
)

#: One (property, kind of evidence) pair of a failure's signature.
Sig = tuple[str, str]


class OutOfBudget(BaseException):
    """The session's budget is spent: the batch under way stops at once. Not an
    ``Exception``, so that Hypothesis passes it on instead of taking it for a failure."""


@dataclass(frozen=True)
class Budget:
    """When a fuzzing session must end (on ``time.monotonic()``'s clock)."""

    deadline: float = math.inf

    @classmethod
    def of(cls, seconds: float) -> Budget:
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def spent(self) -> bool:
        return self.left() <= 0

    def fits(self, scenario: Scenario) -> bool:
        """Would a replay of ``scenario`` end within the budget (by its estimate)?"""
        return scenario.duration_s + REPLAY_OVERHEAD_S <= self.left()

    def check(self) -> None:
        """``OutOfBudget`` once it is spent."""
        if self.spent():
            raise OutOfBudget


def real_kinds(kinds: tuple[Kind, ...] = FUZZ_KINDS) -> tuple[Kind, ...]:
    """Those of ``kinds`` a fuzzer can inject into live processes here (network kinds
    need emulated hosts; on a cluster, the local one's, and never ``power_off``, which
    would cut a node's host actor off)."""
    cluster = os.environ.get(CLUSTER_ENV)
    if cluster:
        kinds = tuple(k for k in kinds if k is not Kind.POWER_OFF)
        if cluster != "auto":
            return tuple(k for k in kinds if not k.info.network)
    if emulated.unavailable() is None:
        return kinds
    return tuple(k for k in kinds if not k.info.network)


def signature(verdicts: Iterable[Verdict]) -> frozenset[Sig]:
    """The (property, kind of evidence) pairs of every unexpected violation."""
    return frozenset(
        (v.name, kind)
        for v in verdicts
        if v.verdict == FAIL and not v.expected
        for kind in (v.evidence or ("",))
    )


def describe(sig: Iterable[Sig]) -> str:
    return "; ".join(f"{name} ({kind})" if kind else name for name, kind in sorted(sig))


class Violation(MwsimError, AssertionError):
    """A drawn example violated a property; the scenario file reproduces it."""

    def __init__(
        self, scenario: Scenario, verdicts: list[Verdict], path: Path, note: str = ""
    ) -> None:
        self.scenario, self.verdicts, self.path = scenario, verdicts, path
        self.note = note  # what was not done with it (say, shrinking: the budget ran out)
        failed = "; ".join(f"{v.name}: {v.detail}" for v in verdicts if v.verdict == FAIL)
        super().__init__(f"{failed}\nreproduce with: {reproduce_command(path, scenario.runtime)}")

    @property
    def signature(self) -> frozenset[Sig]:
        return signature(self.verdicts)


def reproduce_command(path: Path, runtime: str, mode: str = Mode.REAL) -> str:
    """The complete ``mwsim run`` line that replays a found scenario on ``runtime``."""
    flag = {Mode.SIM: " --sim", Mode.REAL: " --real", Mode.BOTH: ""}[Mode(mode)]
    return f"mwsim run {path}{flag} --runtime {runtime}"


def save_failure(scenario: Scenario, verdicts: list[Verdict], path: Path, how: str) -> Path:
    """Write the failing scenario (its runtime included) where ``mwsim run`` can replay it."""
    failed = [v for v in verdicts if v.verdict == FAIL]
    note = "; ".join(f"{v.name} violated ({v.detail})" for v in failed)
    described = scenario.model_copy(
        update={"description": f"found by mwsim fuzz ({how}) on runtime {scenario.runtime}: {note}"}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_scenario(described))
    return path


def failures(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.verdict == FAIL]


def known_for(runtime: str, reference: str | None = None) -> KnownFinding | None:
    """The known findings to steer around when fuzzing ``runtime``: its own declared ones
    and the reference's (None: neither declares any)."""
    names = [runtime] + ([reference] if reference and reference != runtime else [])
    declared = [cls for cls in map(runtimes.load, names) if cls.known_findings]
    if not declared:
        return None

    def known(timeline: Timeline, fields: dict[str, Any], at: float, workload: str) -> Any:
        for cls in declared:
            found = cls.known_finding(timeline, fields, at, workload)
            if found is not None:
                return found
        return None

    return known


def findings_in(scenario: Scenario, known: KnownFinding) -> list[int | str]:
    """The known findings the scenario's events run into, in time order."""
    timeline = scenario.timeline()
    workload = scenario.workload.kind
    found: list[int | str] = []
    order = sorted(range(len(scenario.events)), key=lambda i: (scenario.events[i].at, i))
    for index in order:
        event = scenario.events[index]
        fields = event.model_dump(mode="json", by_alias=True, exclude_none=True)
        at = float(fields.pop("at"))
        hit = known(timeline, fields, at, workload)
        if hit is not None:
            found.append(hit)
        timeline.try_apply(event)
    return found


# -- model --------------------------------------------------------------------------------

#: Called with the signature of an example whose violations were all covered already.
OnKnown = Callable[[frozenset[Sig]], None]


def _new_or_known(
    verdicts: list[Verdict], covered: frozenset[Sig], on_known: OnKnown | None
) -> bool:
    """Whether violated ``verdicts`` show something not ``covered`` (else it is counted as
    a hit of what is known, and the example goes on)."""
    sig = signature(verdicts)
    if sig and sig <= covered:
        if on_known is not None:
            on_known(sig)
        return False
    return True


def check_model(
    scenario: Scenario,
    out: Path,
    model: RuntimeModel | None = None,
    covered: frozenset[Sig] = frozenset(),
    on_known: OnKnown | None = None,
    budget: Budget = Budget(),
) -> None:
    """The simulated history of ``scenario`` (simulated with ``model``, if given) must
    satisfy every property, judged by the runtime's default bounds (violations with a
    ``covered`` signature are known and let pass)."""
    budget.check()
    history = simulate(scenario, model=model)
    overall, verdicts = judge(check(history, scenario), set())
    if overall == FAIL and _new_or_known(verdicts, covered, on_known):
        path = save_failure(scenario, verdicts, out / "scratch" / "model.yaml", "model")
        raise Violation(scenario, verdicts, path)


# -- differential -------------------------------------------------------------------------


def check_differential(
    scenario: Scenario,
    out: Path,
    runtime: str = "multiworld",
    zygote: Zygote | None = None,
    covered: frozenset[Sig] = frozenset(),
    on_known: OnKnown | None = None,
    budget: Budget = Budget(),
    reference: str | None = REFERENCE,
) -> None:
    """``scenario`` run on the model and for real (with ``runtime``) must pass and conform
    (``reference``: the runtime that decides an unclear failed bring-up)."""
    if not budget.fits(scenario):
        raise OutOfBudget
    drawn = scenario.model_copy(update={"runtime": runtime, "name": f"fuzz-{runtime}"})
    where = out / "last-run"
    outcome = run_scenario(drawn, mode=Mode.BOTH, out_dir=where, zygote=zygote, reference=reference)
    if outcome.verdict == FAIL and _new_or_known(outcome.verdicts, covered, on_known):
        scratch = out / "scratch" / f"differential-{runtime}.yaml"
        path = save_failure(drawn, outcome.verdicts, scratch, "differential")
        raise Violation(drawn, outcome.verdicts, path)


# -- stateful, on a live deployment -------------------------------------------------------


@dataclass(frozen=True)
class LiveHooks:
    """What a session tells its live examples: the known findings to steer around, and
    whom to tell of an example that showed only known signatures."""

    known: KnownFinding | None = None
    on_known: OnKnown | None = None
    budget: Budget = Budget()  # examples stop (unjudged) once it is spent
    reference: str | None = REFERENCE  # decides an unclear failed bring-up


class LiveDeployment(RuleBasedStateMachine):
    """Rules act on live MultiWorld processes; after each step the properties must hold.

    Each step draws one enabled kind of event (or a wait) and asks the ``Proposer`` of
    :mod:`mwsim.strategies` for an event of that kind that is possible now: the same
    proposals as the scenario strategy, so every kind of the vocabulary is fuzzed live.
    Configure with ``LiveDeployment.configured(runtime=..., out=..., zygote=...)``.
    """

    runtime: ClassVar[str] = "multiworld"
    out: ClassVar[Path] = Path("out/fuzz")
    zygote: ClassVar[Zygote | None] = None
    variant: ClassVar[int] = 0
    kind_pool: ClassVar[tuple[Kind, ...]] = FUZZ_KINDS  # the kinds examples choose from
    step_s: ClassVar[float] = 0.75
    #: Steer clear of known findings: the ``hooks``' own, or with ``avoid_known`` alone
    #: upstream MultiWorld's (``mwsim.findings``).
    avoid_known: ClassVar[bool] = False
    hooks: ClassVar[LiveHooks] = LiveHooks()
    runs = itertools.count()
    counters: ClassVar[tuple[Callable[[], None], ...]] = ()  # called once per example
    #: Every violation the examples met, first first (configure with a fresh list): live
    #: runs are not repeatable, so the one seen counts even if Hypothesis's final replay of
    #: the example goes another way.
    seen: ClassVar[list[Violation]] = []
    #: Signatures already known: an example that shows only these goes on (the hooks'
    #: ``on_known`` hears of them once, at its end).
    covered: ClassVar[frozenset[Sig]] = frozenset()

    @classmethod
    def configured(cls, **options: Any) -> type[LiveDeployment]:
        return type(cls.__name__, (cls,), options)

    def __init__(self) -> None:
        super().__init__()
        self.hooks.budget.check()
        for count in self.counters:
            count()
        text = LIVE_BASES[self.variant % len(LIVE_BASES)] + "duration_s: 3600\n"
        base = parse_inline(text, name=f"live-{self.runtime}")
        base = base.model_copy(update={"runtime": self.runtime})
        self.oracle = base.timeline()
        self.kinds: list[Kind] = []
        self.controller = Controller(
            base,
            self.out / "live-runs" / str(next(self.runs)),
            zygote=self.zygote,
            bringup_timeout_s=60,
        )
        self.finished = False
        self.violated = False
        self.aborted = False  # out of budget, or interrupted: torn down unjudged
        self.known_seen: frozenset[Sig] = frozenset()
        self.known = self.hooks.known or (findings.known_finding if self.avoid_known else None)
        try:
            self.controller.start()
        except BringUpFailed as failed:
            self.finished = True
            self._bringup_failed(base, failed)
        except BaseException:
            self.finished = True
            self.controller.finish(RunStatus.INTERRUPTED, "interrupted")
            raise

    def _bringup_failed(self, base: Scenario, failed: BringUpFailed) -> NoReturn:
        """The deployment did not come up: judged like any run (a find, if the runtime
        failed); ``BringUpFailed`` again if it was not the runtime's doing."""
        real = self.controller.finish(RunStatus.BRINGUP_FAILED, str(failed), failed.cause)
        if failed.cause == Cause.HARNESS:
            raise failed
        if failed.cause == Cause.UNCLEAR:
            ask_reference(real, base, self.hooks.reference, self.zygote)
        verdicts = check(read_history(real.history), base)
        if not failures(verdicts):
            raise failed  # the harness's doing (or its lag): not a finding
        self._violated(base, verdicts)

    # -- stepping ------------------------------------------------------------------------

    def _allowed(self, kind: Kind, fields: dict[str, Any]) -> bool:
        """Not a race, nor an event that runs into a known finding (when steering around
        them)."""
        if racy(kind, fields, self.runtime):
            return False
        if self.known is None:
            return True
        proposal = {"do": kind.value, **fields}
        workload = self.controller.scenario.workload.kind
        return self.known(self.oracle, proposal, self.controller.now(), workload) is None

    def _act(self, data: st.DataObject) -> None:
        """Do one possible event of an enabled kind (or nothing), then let time pass."""
        propose = Proposer(data.draw, self.oracle, self._allowed)
        propose.fresh = len(self.controller.scenario.events)  # fresh names stay fresh
        for kind in data.draw(st.permutations(self.kinds)):
            fields = propose(kind)
            if fields is None:
                continue
            at = round(self.controller.now(), 3)
            if self.oracle.try_apply(parse_event({**fields, "at": at})):
                with contextlib.suppress(PlanError):  # the state moved on (a hang ended)
                    self.controller.inject(fields)
                break
        self.controller.advance(self.controller.now() + self.step_s)

    def _abortable(self, step: Callable[[], None]) -> None:
        """Take a step unless the budget is spent; a spent budget or an interrupt aborts
        the example (it is torn down, not judged)."""
        try:
            self.hooks.budget.check()
            step()
        except (OutOfBudget, KeyboardInterrupt):
            self.aborted = True
            raise

    @initialize(data=st.data())
    def swarm(self, data: st.DataObject) -> None:
        """Swarm testing: each example uses only some kinds of action, so that the
        interplay of a few is explored deeply instead of every kind shallowly. Every
        example starts with one of them (Hypothesis would often draw no step at all)."""
        pool = real_kinds(self.kind_pool)
        self.kinds = sorted(data.draw(st.sets(st.sampled_from(pool), min_size=1)))

        def first() -> None:
            if self.known is not None:  # let every first heartbeat be written (finding 3)
                self.controller.advance(FIRST_HEARTBEAT_S)
            self._act(data)

        self._abortable(first)

    @rule(data=st.data())
    def act(self, data: st.DataObject) -> None:
        self._abortable(lambda: self._act(data))

    @rule()
    def wait(self) -> None:
        self._abortable(lambda: self.controller.advance(self.controller.now() + self.step_s))

    # -- judging -------------------------------------------------------------------------

    def _so_far(self, end: float) -> Scenario:
        return self.controller.scenario.model_copy(update={"duration_s": round(end, 3)})

    def _judge(self, scenario: Scenario, final: bool) -> None:
        history = read_history(self.controller.out / "history.jsonl")
        verdicts = check(history, scenario)
        if not final:
            verdicts = [v for v in verdicts if v.name != "hygiene"]
        if not failures(verdicts):
            return
        sig = signature(verdicts)
        if sig and sig <= self.covered:  # only what is known: the example goes on
            self.known_seen |= sig
            return
        self._violated(scenario, verdicts)

    def _violated(self, scenario: Scenario, verdicts: list[Verdict]) -> NoReturn:
        """Keep what the example saw (``seen``) and raise it, lasting until its bounds."""
        self.violated = True
        replay = scenario.model_copy(update={"duration_s": judged_end(scenario)})
        scratch = self.out / "scratch" / f"stateful-{self.runtime}.yaml"
        path = save_failure(replay, verdicts, scratch, "stateful")
        violation = Violation(replay, verdicts, path)
        self.seen.append(violation)
        raise violation

    @invariant()
    def properties_hold(self) -> None:
        self._judge(self._so_far(self.controller.now()), final=False)

    def teardown(self) -> None:
        if self.finished:
            return
        self.finished = True
        try:
            if self.aborted:
                self.controller.finish(RunStatus.INTERRUPTED, "the example was aborted")
            else:
                self._teardown()
        finally:
            if self.known_seen and self.hooks.on_known is not None:
                self.hooks.on_known(self.known_seen)

    def _teardown(self) -> None:
        end = self.controller.now()
        try:
            if not self.violated:  # let every bound fall due before the final judgement
                end = max(end, judged_end(self._so_far(end), min_tail_s=0.5))
                self.controller.advance(end)
        finally:
            outcome = self.controller.finish()
        assert outcome.leftovers.clean, outcome.leftovers.describe()
        if not self.violated:
            self._judge(self._so_far(end), final=True)


def racy(kind: Kind, fields: dict[str, Any], runtime: str) -> bool:
    """A silent fault that ends about when the watchdog may see it: whether it is reported
    is a race, so what it shows on a live run would not replay the same way."""
    for_s = fields.get("for_s")
    if for_s is None:
        return False
    try:
        silent = parse_event({"do": kind.value, "at": 0.0, **fields}).silent
    except (ValueError, TypeError):  # only some fields drawn yet: judged once all are
        return False
    lo, hi = model_for(runtime).watchdog_window()
    return silent and lo - RACE_MARGIN_S <= for_s <= hi + RACE_MARGIN_S


# -- shrinking by replay ------------------------------------------------------------------


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
) -> list[Verdict]:
    """Replay ``scenario`` for real (and on the model with ``both``); its verdicts."""
    mode = Mode.BOTH if both else Mode.REAL
    outcome = run_scenario(scenario, mode=mode, out_dir=out, zygote=zygote, reference=reference)
    return outcome.verdicts


def replay_violates(
    scenario: Scenario,
    wanted: set[Sig],
    out: Path,
    zygote: Zygote | None = None,
    reference: str | None = REFERENCE,
) -> list[Verdict] | None:
    """Replay ``scenario``; its verdicts if one of the ``wanted`` (property, kind of
    evidence) pairs shows again, on any world."""
    both = any(name == Property.CONFORMANCE for name, _ in wanted)
    verdicts = replay(scenario, out, zygote, both, reference)
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
        return replay_violates(candidate, goal, where, zygote, reference=reference)

    def theirs(candidate: Scenario) -> frozenset[Sig]:
        assert reference is not None
        afford(candidate)
        upstream = candidate.model_copy(update={"runtime": reference})
        both = target[0] == Property.CONFORMANCE
        return signature(replay(upstream, out / "shrink" / str(next(runs)), zygote, both))

    def only_ours(candidate: Scenario) -> list[Verdict] | None:
        got = ours(candidate)
        if got is None or (reference and target in theirs(candidate)):
            return None
        return got

    try:
        verdicts = ours(violation.scenario)
    except _NoTime:
        return Violation(violation.scenario, violation.verdicts, violation.path, UNCONFIRMED)
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
        verdicts = [_only(v, mine) for v in verdicts]
    path = save_failure(current, verdicts, violation.path, "shrunk by replay")
    return Violation(current, verdicts, path, "; ".join(notes))


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


def _only(verdict: Verdict, mine: frozenset[Sig]) -> Verdict:
    """A failed verdict kept only for the kinds of evidence that are the runtime's own."""
    if verdict.verdict != FAIL:
        return verdict
    kinds = tuple(k for k in (verdict.evidence or ("",)) if (verdict.name, k) in mine)
    if not kinds:
        return replace(verdict, verdict=PASS, detail="the reference runtime fails it too")
    return replace(verdict, evidence=kinds if verdict.evidence else ())


# -- a fuzzing session ----------------------------------------------------------------------


@dataclass
class Failure:
    """One distinct failure of a session: its reproducer (shrunk where it could be).
    ``signature`` is what it brought that no earlier failure of the session showed (its
    reproducer may show earlier ones too: ``violation.signature``)."""

    signature: frozenset[Sig]
    violation: Violation
    found_by: str  # model | stateful | differential
    found_after_s: float
    examples_at: int  # examples run before it was found
    hits: int = 1  # examples that showed it
    finding: int | str | None = None  # it is this known finding of the runtime
    report: Path | None = None
    reproduce: list[str] = field(default_factory=list)  # the commands that replay it

    @property
    def path(self) -> Path:
        return self.violation.path

    @property
    def note(self) -> str:
        """What was left undone with it (its replay, shrinking, the reference's replay)."""
        return self.violation.note

    @property
    def trigger(self) -> frozenset[Kind]:
        """The kinds of event its reproducer needs."""
        return frozenset(e.kind for e in self.violation.scenario.events)

    def dominates(self, examples: int) -> bool:
        """Most examples since it was found have hit it."""
        since = examples - self.examples_at
        return self.hits >= 2 and self.hits >= DOMINANT_SHARE * max(since, 1)

    @property
    def mode(self) -> Mode:
        return {"model": Mode.SIM, "stateful": Mode.REAL}.get(self.found_by, Mode.BOTH)


@dataclass(frozen=True)
class BatchSize:
    """How many examples a batch runs, and how many steps a live example takes at most."""

    examples: int = 5
    steps: int = 5


@dataclass
class FuzzResult:
    """What a fuzzing session did and found."""

    examples: int = 0
    batches: int = 0
    failures: list[Failure] = field(default_factory=list)  # distinct, the runtime's own
    known: list[Failure] = field(default_factory=list)  # they are the runtime's known findings
    elapsed_s: float = 0.0
    upstream: list[Violation] = field(default_factory=list)  # the reference fails them too
    flaky: list[Violation] = field(default_factory=list)  # seen live, not again on replay
    bringup_failures: list[str] = field(default_factory=list)  # live batches skipped
    log: list[str] = field(default_factory=list)
    budget_s: float = math.inf
    interrupted: int | None = None  # the signal that stopped the session early
    summary: Path | None = None  # where the summary was kept

    @property
    def violation(self) -> Violation | None:
        """The first distinct failure's reproducer (None: none found)."""
        return self.failures[0].violation if self.failures else None

    @property
    def found_by(self) -> str | None:
        return self.failures[0].found_by if self.failures else None

    @property
    def first_failure_s(self) -> float | None:
        return self.failures[0].found_after_s if self.failures else None

    def to_dict(self) -> dict[str, Any]:
        """The session's summary as JSON data (kept beside its finds)."""

        def failure(f: Failure) -> dict[str, Any]:
            out: dict[str, Any] = {
                "signature": describe(f.signature),
                "properties": sorted({name for name, _ in f.signature}),
                "found_by": f.found_by,
                "found_after_s": round(f.found_after_s, 1),
                "hits": f.hits,
                "events": len(f.violation.scenario.events),
                "scenario": str(f.path),
                "report": str(f.report) if f.report else None,
                "reproduce": f.reproduce,
            }
            if f.note:
                out["note"] = f.note
            if f.finding is not None:
                out["finding"] = f.finding
            return out

        return {
            "examples": self.examples,
            "batches": self.batches,
            "elapsed_s": round(self.elapsed_s, 1),
            "budget_s": self.budget_s if math.isfinite(self.budget_s) else None,
            "interrupted": signal.Signals(self.interrupted).name if self.interrupted else None,
            "failures": [failure(f) for f in self.failures],
            "known": [failure(f) for f in self.known],
            "upstream": [str(v.path) for v in self.upstream],
            "flaky": [str(v.path) for v in self.flaky],
            "bringup_failures": self.bringup_failures,
            "log": self.log,
        }


def steer(
    pool: tuple[Kind, ...], found: list[Failure], examples: int, turn: int
) -> tuple[Kind, ...]:
    """The kinds of event a batch draws from: on every other turn, without the kinds that
    trigger a dominating failure (swarm-style; the other turns keep them, as a rarer bug
    may need them too). Never empty."""
    if turn % 2 == 0:
        return pool
    avoid = frozenset().union(*(f.trigger for f in found if f.dominates(examples)))
    return tuple(k for k in pool if k not in avoid) or pool


class _Session:
    """The failures a fuzzing session has met, and what to do with a new one."""

    def __init__(
        self,
        result: FuzzResult,
        out: Path,
        runtime: str,
        reference: str | None,
        zygote: Zygote | None,
        known: KnownFinding | None,
        started: float,
        budget: Budget = Budget(),
    ) -> None:
        self.result, self.out, self.runtime = result, out, runtime
        self.reference, self.zygote, self.known = reference, zygote, known
        self.started, self.budget = started, budget
        self.covered: set[Sig] = set()
        self.flaky_tries: Counter[Sig] = Counter()
        self.stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.numbers: Counter[str] = Counter()
        self.replays = itertools.count()

    def _name(self, what: str) -> Path:
        """A file name no other session (and no other find of this one) uses."""
        while True:
            self.numbers[what] += 1
            path = self.out / f"{self.stamp}-{what}-{self.numbers[what]}.yaml"
            if not path.exists():
                return path

    def hit(self, sig: frozenset[Sig]) -> None:
        """An example showed only known signatures."""
        for failure in self.result.failures + self.result.known:
            if failure.signature & sig:
                failure.hits += 1

    def record(self, violation: Violation, fuzzer: str, real: bool) -> None:
        """A violation a batch met: known, the reference's, flaky, or a new failure (shrunk
        and written under a unique name with its report). What the budget left undone
        (the reference's replay, the shrinking) the failure's note says; interrupted while
        shrinking, it is kept unshrunk."""
        log = self.result.log.append
        new = violation.signature - self.covered
        if not new:
            self.hit(violation.signature)
            return
        checked = True  # against the reference, where there is one
        if real and self.reference:
            theirs = self._reference_shows(violation)
            if theirs is None:
                checked = False
            elif not new - theirs:
                kept = self._name(f"{self.runtime}-upstream")
                save_failure(violation.scenario, violation.verdicts, kept, "upstream")
                self.result.upstream.append(Violation(violation.scenario, violation.verdicts, kept))
                self.covered |= new
                log(f"{self.reference} fails it too ({describe(new)}): {kept}")
                return
            else:
                new = new - theirs
                mine = violation.signature - theirs
                verdicts = [_only(v, mine) for v in violation.verdicts]
                violation = Violation(violation.scenario, verdicts, violation.path)
        wanted = min(new)
        found_after = time.monotonic() - self.started
        if real and checked:
            try:
                shrunk = minimize(
                    violation,
                    self.out,
                    self.zygote,
                    log,
                    self.reference,
                    wanted,
                    self.known,
                    self.budget,
                )
            except KeyboardInterrupt:
                self._keep(violation, wanted, fuzzer, found_after, INTERRUPTED, real)
                raise
            if shrunk is None:
                self.flaky_tries[wanted] += 1
                if self.flaky_tries[wanted] >= MAX_FLAKY:
                    self.covered.add(wanted)
                kept = self._name(f"{self.runtime}-flaky")
                save_failure(violation.scenario, violation.verdicts, kept, "flaky")
                self.result.flaky.append(Violation(violation.scenario, violation.verdicts, kept))
                log(f"seen once, not again on replay (flaky: {describe([wanted])}): {kept}")
                return
            violation = shrunk
        elif not checked:
            note = f"{UNCONFIRMED}; {UNCHECKED}"
            violation = Violation(violation.scenario, violation.verdicts, violation.path, note)
        self._keep(violation, wanted, fuzzer, found_after, violation.note, real)

    def _keep(
        self, violation: Violation, wanted: Sig, fuzzer: str, after: float, note: str, real: bool
    ) -> None:
        """Write a new failure (and its report) and count it, known finding or new."""
        what = self.runtime if real else "model"
        path = save_failure(violation.scenario, violation.verdicts, self._name(what), fuzzer)
        found = Failure(
            frozenset((violation.signature - self.covered) | {wanted}),
            Violation(violation.scenario, violation.verdicts, path, note),
            fuzzer,
            after,
            self.result.examples,
        )
        if real and self.known is not None:
            matches = findings_in(violation.scenario, self.known)
            found.finding = matches[0] if matches else None
        found.reproduce = self.commands(found)
        found.report = report.write_fuzz_report(
            found.violation, path.with_suffix(".json"), found.mode, found.reproduce
        )
        self.covered |= violation.signature | {wanted}
        log = self.result.log.append
        also = f" ({note})" if note else ""
        if found.finding is not None:
            self.result.known.append(found)
            log(f"it is known finding {found.finding}{also}: {path}")
        else:
            self.result.failures.append(found)
            number = len(self.result.failures)
            log(f"new failure {number}: {describe(found.signature)}{also}: {path}")

    def batch(
        self, fuzzer: str, seed: int, turn: int, pool: tuple[Kind, ...], size: BatchSize
    ) -> None:
        """Run one batch of ``fuzzer`` drawing events of the ``pool``'s kinds; what it met
        is recorded (``OutOfBudget`` once the budget is spent, after recording what was
        met). A live deployment that did not come up by the harness's doing is skipped,
        up to ``MAX_BRINGUP_FAILURES`` times."""
        real = fuzzer != "model"
        covered = frozenset(self.covered)
        seen: list[Violation] = []

        def count() -> None:
            self.result.examples += 1

        try:
            if fuzzer == "model":
                examples = max(size.examples, 50)
                _run_model_batch(
                    self.out, examples, seed, count, pool, covered, self.hit, self.budget
                )
            elif fuzzer == "differential":
                kinds = real_kinds(pool)
                _run_differential_batch(
                    self.out,
                    size.examples,
                    seed,
                    self.runtime,
                    self.zygote,
                    count,
                    self.known,
                    kinds,
                    covered,
                    self.hit,
                    self.budget,
                    self.reference,
                )
            else:
                machine = LiveDeployment.configured(
                    runtime=self.runtime,
                    out=self.out,
                    zygote=self.zygote,
                    variant=turn,
                    hooks=LiveHooks(self.known, self.hit, self.budget, self.reference),
                    counters=(count,),
                    seen=seen,
                    kind_pool=pool,
                    covered=covered,
                )
                options = _settings(size.examples, shrink=False, stateful_step_count=size.steps)
                fix_seed(seed)(get_state_machine_test(machine, settings=options))()
        except OutOfBudget:
            for violation in seen:  # met before the budget ran out
                self.record(violation, fuzzer, real)
            raise
        except Exception as found:  # Violation, ExceptionGroup, or a flaky live replay
            failed = None if seen else _bringup_failure(found)
            if failed is None:
                for violation in _violations(found, seen):
                    self.record(violation, fuzzer, real)
                return
            reason = str(failed).splitlines()[-1].strip()  # not the runtime's doing: skipped
            self.result.bringup_failures.append(reason)
            self.result.log.append(f"the live deployment did not come up ({reason}); skipped")
            if len(self.result.bringup_failures) >= MAX_BRINGUP_FAILURES:
                raise failed from found

    def commands(self, found: Failure) -> list[str]:
        """The ``mwsim run`` lines that replay a failure (and show the reference pass it)."""
        lines = [reproduce_command(found.path, self.runtime, found.mode)]
        if self.reference and found.mode is not Mode.SIM:
            passes = reproduce_command(found.path, self.reference, Mode.REAL)
            checked = not {UNCHECKED, UNCONFIRMED, INTERRUPTED} & set(found.note.split("; "))
            said = "the reference passes it" if checked else "the reference (not yet tried)"
            lines.append(f"{passes}  # {said}")
        return lines

    def _reference_shows(self, violation: Violation) -> frozenset[Sig] | None:
        """What the reference shows on the violation's scenario (None: no budget left for
        that replay)."""
        assert self.reference is not None
        upstream = violation.scenario.model_copy(update={"runtime": self.reference})
        if not self.budget.fits(upstream):
            return None
        both = any(name == Property.CONFORMANCE for name, _ in violation.signature)
        where = self.out / "reference" / str(next(self.replays))
        return signature(replay(upstream, where, self.zygote, both, self.reference))


def _settings(examples: int, shrink: bool = True, **extra: Any) -> settings:
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        **extra,
    )


def fuzz(
    budget_s: float,
    *,
    real: bool = False,
    runtime: str = "multiworld",
    out: Path = Path("out/fuzz"),
    batch: int = 5,
    step_count: int = 5,
    seed: int | None = None,
    reference: str | None = "multiworld",
    fuzzers: tuple[str, ...] | None = None,
    on_batch: Callable[[FuzzResult, str], None] | None = None,
    kinds: tuple[Kind, ...] = FUZZ_KINDS,
    stop_after: int | None = None,
) -> FuzzResult:
    """Fuzz in batches until the budget is spent (or ``stop_after`` distinct failures are
    found), keeping every distinct failure (see the module doc).

    Without ``real``: the model fuzzer. With it: the stateful and the differential
    fuzzers take turns on live deployments of ``runtime``. When ``runtime`` is not the
    ``reference``, a violation the reference runtime shows on the same scenario is an
    upstream finding (kept in ``upstream``), not the runtime's. With ``seed``, every
    batch's examples are a function of it and the batch number. ``kinds``: the kinds of
    event the examples draw from (on live processes, the network kinds only where hosts
    can be emulated).

    The budget bounds everything, shrinking and replays included: no replay starts that
    would not end within it, and the example under way stops when it is spent (the session
    ends within ``GRACE_S`` of it). Ctrl-C or SIGTERM stops the session too: the result so
    far is returned with ``interrupted`` set. Either way its summary is kept in
    ``OUT/<session start>-summary.json``.
    """
    result, started = FuzzResult(budget_s=budget_s), time.monotonic()
    budget = Budget(started + budget_s)
    out.mkdir(parents=True, exist_ok=True)
    chosen = list(fuzzers or (("stateful", "differential") if real else ("model",)))
    counter = itertools.count()
    draw_seed = random.Random(seed)
    other = reference if real and reference and reference != runtime else None
    known = known_for(runtime, other) if real else None
    zygote: Zygote | None = None  # one fork server for every live run of the session
    session = _Session(result, out, runtime, other, None, known, started, budget)
    size = BatchSize(batch, step_count)
    try:
        with _interruptible():
            if real and not os.environ.get(CLUSTER_ENV):  # on a cluster, the nodes fork
                zygote = session.zygote = Zygote(runtime, out / "zygote.log")
            for fuzzer in itertools.cycle(chosen):
                if budget.spent():
                    break
                if stop_after is not None and len(result.failures) >= stop_after:
                    break
                turn = next(counter) // len(chosen)
                pool = steer(kinds, result.failures, result.examples, turn)
                try:
                    session.batch(fuzzer, draw_seed.getrandbits(64), turn, pool, size)
                except OutOfBudget:
                    break
                finally:
                    result.batches += 1
                    if on_batch is not None:
                        on_batch(result, fuzzer)
    except KeyboardInterrupt as stopped:
        result.interrupted = int(getattr(stopped, "signum", signal.SIGINT))
        result.log.append(f"stopped by {signal.Signals(result.interrupted).name}")
    finally:
        if zygote is not None:
            zygote.stop()
        result.elapsed_s = time.monotonic() - started
        result.summary = out / f"{session.stamp}-summary.json"
        result.summary.write_text(jsonout.dumps(result.to_dict(), indent=True) + "\n")
    return result


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM stops a session as Ctrl-C does (``Interrupted`` where it lands; a run under
    way takes it where its controller waits, and tears down first)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, stop) for signum in TRAPPED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _bringup_failure(found: BaseException) -> BringUpFailed | None:
    """The ``BringUpFailed`` behind ``found`` (itself, in a group, or as its cause), if any."""
    if isinstance(found, BringUpFailed):
        return found
    inner: list[BaseException] = []
    if isinstance(found, BaseExceptionGroup):
        inner.extend(found.exceptions)
    inner.extend(e for e in (found.__cause__, found.__context__) if e is not None)
    return next((f for f in map(_bringup_failure, inner) if f is not None), None)


def _violations(found: BaseException, seen: list[Violation]) -> list[Violation]:
    """The violations a batch met: those live examples saw (Hypothesis's final replay of a
    live example may differ, even fail otherwise); else the one raised, or each one of a
    group (Hypothesis reports distinct failures together). Anything else is re-raised."""
    if seen:
        return list(seen)
    if isinstance(found, Violation):
        return [found]
    if isinstance(found, BaseExceptionGroup):
        inner = [e for e in found.exceptions if isinstance(e, Violation)]
        if inner:
            return inner
    raise found


def _run_model_batch(
    out: Path,
    examples: int,
    seed: int,
    count: Callable[[], None],
    kinds: tuple[Kind, ...],
    covered: frozenset[Sig] = frozenset(),
    on_known: OnKnown | None = None,
    budget: Budget = Budget(),
) -> None:
    from hypothesis import given

    @fix_seed(seed)
    @_settings(examples)
    @given(scenarios(kinds=kinds))
    def batch(s: Scenario) -> None:
        count()
        check_model(s, out, covered=covered, on_known=on_known, budget=budget)

    batch()


def _run_differential_batch(
    out: Path,
    examples: int,
    seed: int,
    runtime: str,
    zygote: Zygote | None,
    count: Callable[[], None],
    known: KnownFinding | None,
    kinds: tuple[Kind, ...],
    covered: frozenset[Sig] = frozenset(),
    on_known: OnKnown | None = None,
    budget: Budget = Budget(),
    reference: str | None = REFERENCE,
) -> None:
    from hypothesis import given

    @fix_seed(seed)
    @_settings(examples, shrink=False)
    @given(
        scenarios(
            max_workers=3,
            min_events=1,
            max_events=4,
            avoid_known=known or False,
            kinds=kinds,
        )
    )
    def batch(s: Scenario) -> None:
        count()
        check_differential(s, out, runtime, zygote, covered, on_known, budget, reference)

    batch()
