"""The fuzzers: on the model, on live deployments (stateful), and both at once (differential).

- ``check_model``: a drawn scenario's simulated history must satisfy every property (the
  model and the checks agree with each other; fast, many examples).
- ``LiveDeployment``: a Hypothesis state machine whose rules crash, hang, slow, join,
  add and remove worlds on a *live* deployment, with the properties as invariants after
  every step, and a teardown that must leave nothing behind.
- ``check_differential``: a drawn scenario run on the model and for real must pass and
  conform.

Every failing example is shrunk and written out as a scenario file that ``mwsim run``
reproduces; keep it under ``scenarios/regressions/``. On the model Hypothesis shrinks it.
On real processes each shrink step is a whole deployment, so Hypothesis only finds the
example and ``minimize`` shrinks it by replay: it drops events one at a time, keeping each
drop whose replay still violates the same property, until no single event can go. The
file written is the last one seen to reproduce. A live violation whose first replay does
not show it again is *flaky*: kept as ``flaky-<n>.yaml`` and the search goes on. Live
examples steer clear of races their outcome would hang on (a silent fault lasting about as
long as the watchdog takes to see it). ``fuzz()`` drives them against a time budget for
``mwsim fuzz``.

Fuzzing a runtime other than the reference (upstream MultiWorld), a violation counts only
if the reference, replaying the same scenario, does not show it too; and the fuzzers steer
around the reference's known findings (``mwsim.findings``, ``avoid_known``).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

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

from mwsim.checks import FAIL, PASS, Verdict, check, judge, violated_pairs
from mwsim.errors import BringUpFailed, MwsimError, PlanError
from mwsim.events import Kind, parse_event
from mwsim.findings import FIRST_HEARTBEAT_S, known_finding
from mwsim.history import Mode, read_history
from mwsim.hosts import emulated
from mwsim.replay import Controller, RunStatus
from mwsim.replay.zygote import Zygote
from mwsim.runs import run_scenario
from mwsim.scenario import Scenario, dump_scenario, parse_inline, plan_problems
from mwsim.sim import simulate
from mwsim.strategies import FUZZ_KINDS, Proposer, scenarios
from mwsim.timing import RuntimeModel, judged_end, model_for

#: A silent fault lasting within this of the watchdog's window is a race (reported or not).
RACE_MARGIN_S = 0.5

#: Live batches whose deployment did not come up, skipped, before fuzzing gives up.
MAX_BRINGUP_FAILURES = 3

#: The live deployments the stateful fuzzer starts from (batch n uses variant n).
LIVE_BASES = (
    "topology: {generator: fan_in, workers: 3, hosts: 2}\nworkload: {kind: stream}\n",
    "topology: {generator: fan_in, workers: 2, hosts: 1}\nworkload: {kind: request}\n",
    "topology: {generator: pipeline, stages: [2], hosts: 2}\nworkload: {kind: stream}\n",
    "topology: {generator: fan_in, workers: 3, hosts: 1}\nworkload: {kind: allreduce}\n",
)


def real_kinds(kinds: tuple[Kind, ...] = FUZZ_KINDS) -> tuple[Kind, ...]:
    """Those of ``kinds`` a fuzzer can inject into live processes here (network kinds
    need emulated hosts)."""
    if emulated.unavailable() is None:
        return kinds
    return tuple(k for k in kinds if not k.info.network)


class Violation(MwsimError, AssertionError):
    """A drawn example violated a property; the scenario file reproduces it."""

    def __init__(self, scenario: Scenario, verdicts: list[Verdict], path: Path) -> None:
        self.scenario, self.verdicts, self.path = scenario, verdicts, path
        failed = "; ".join(f"{v.name}: {v.detail}" for v in verdicts if v.verdict == FAIL)
        super().__init__(f"{failed}\nreproduce with: mwsim run {path} --real")


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


# -- model --------------------------------------------------------------------------------


def check_model(scenario: Scenario, out: Path, model: RuntimeModel | None = None) -> None:
    """The simulated history of ``scenario`` (simulated with ``model``, if given) must
    satisfy every property, judged by the runtime's default bounds."""
    history = simulate(scenario, model=model)
    overall, verdicts = judge(check(history, scenario), set())
    if overall == FAIL:
        path = save_failure(scenario, verdicts, out / "model-failure.yaml", "model")
        raise Violation(scenario, verdicts, path)


# -- differential -------------------------------------------------------------------------


def check_differential(
    scenario: Scenario, out: Path, runtime: str = "multiworld", zygote: Zygote | None = None
) -> None:
    """``scenario`` run on the model and for real (with ``runtime``) must pass and conform."""
    drawn = scenario.model_copy(update={"runtime": runtime, "name": f"fuzz-{runtime}"})
    outcome = run_scenario(drawn, mode=Mode.BOTH, out_dir=out / "last-run", zygote=zygote)
    if outcome.verdict == FAIL:
        path = save_failure(
            drawn, outcome.verdicts, out / f"differential-{runtime}.yaml", "differential"
        )
        raise Violation(drawn, outcome.verdicts, path)


# -- stateful, on a live deployment -------------------------------------------------------


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
    #: Steer clear of upstream MultiWorld's known findings (``mwsim.findings``).
    avoid_known: ClassVar[bool] = False
    runs = itertools.count()
    counters: ClassVar[tuple[Callable[[], None], ...]] = ()  # called once per example
    #: Every violation the examples met, first first (configure with a fresh list): live
    #: runs are not repeatable, so the one seen counts even if Hypothesis's final replay of
    #: the example goes another way.
    seen: ClassVar[list[Violation]] = []

    @classmethod
    def configured(cls, **options: Any) -> type[LiveDeployment]:
        return type(cls.__name__, (cls,), options)

    def __init__(self) -> None:
        super().__init__()
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
        try:
            self.controller.start()
        except BaseException:
            self.finished = True
            self.controller.finish(RunStatus.BRINGUP_FAILED)
            raise

    # -- stepping ------------------------------------------------------------------------

    def _allowed(self, kind: Kind, fields: dict[str, Any]) -> bool:
        """Not a race, nor an event that runs into a known finding (when steering around
        them)."""
        if racy(kind, fields, self.runtime):
            return False
        if not self.avoid_known:
            return True
        proposal = {"do": kind.value, **fields}
        workload = self.controller.scenario.workload.kind
        return known_finding(self.oracle, proposal, self.controller.now(), workload) is None

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

    @initialize(data=st.data())
    def swarm(self, data: st.DataObject) -> None:
        """Swarm testing: each example uses only some kinds of action, so that the
        interplay of a few is explored deeply instead of every kind shallowly. Every
        example starts with one of them (Hypothesis would often draw no step at all)."""
        pool = real_kinds(self.kind_pool)
        self.kinds = sorted(data.draw(st.sets(st.sampled_from(pool), min_size=1)))
        if self.avoid_known:  # let every first heartbeat be written (known finding 3)
            self.controller.advance(FIRST_HEARTBEAT_S)
        self._act(data)

    @rule(data=st.data())
    def act(self, data: st.DataObject) -> None:
        self._act(data)

    @rule()
    def wait(self) -> None:
        self.controller.advance(self.controller.now() + self.step_s)

    # -- judging -------------------------------------------------------------------------

    def _so_far(self, end: float) -> Scenario:
        return self.controller.scenario.model_copy(update={"duration_s": round(end, 3)})

    def _judge(self, scenario: Scenario, final: bool) -> None:
        history = read_history(self.controller.out / "history.jsonl")
        verdicts = check(history, scenario)
        if not final:
            verdicts = [v for v in verdicts if v.name != "hygiene"]
        if failures(verdicts):
            self.violated = True
            replay = scenario.model_copy(update={"duration_s": judged_end(scenario)})
            path = save_failure(
                replay, verdicts, self.out / f"stateful-{self.runtime}.yaml", "stateful"
            )
            violation = Violation(replay, verdicts, path)
            if not self.seen:
                self.seen.append(violation)
            raise violation

    @invariant()
    def properties_hold(self) -> None:
        self._judge(self._so_far(self.controller.now()), final=False)

    def teardown(self) -> None:
        if self.finished:
            return
        self.finished = True
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


Pair = tuple[str, "str | None"]


def replay(
    scenario: Scenario, out: Path, zygote: Zygote | None = None, both: bool = False
) -> list[Verdict]:
    """Replay ``scenario`` for real (and on the model with ``both``); its verdicts."""
    mode = Mode.BOTH if both else Mode.REAL
    return run_scenario(scenario, mode=mode, out_dir=out, zygote=zygote).verdicts


def replay_violates(
    scenario: Scenario, wanted: set[Pair], out: Path, zygote: Zygote | None = None
) -> list[Verdict] | None:
    """Replay ``scenario``; its verdicts if one of the ``wanted`` (property, world) pairs
    is violated again."""
    both = any(name == "conformance" for name, _ in wanted)
    verdicts = replay(scenario, out, zygote, both)
    return verdicts if violated_pairs(verdicts) & wanted else None


def minimize(
    violation: Violation,
    out: Path,
    zygote: Zygote | None = None,
    log: Callable[[str], None] = lambda _: None,
    reference: str | None = None,
) -> Violation | None:
    """Shrink a real violation by replay to a 1-minimal list of events (see the module doc);
    None when its first replay does not violate the same (property, world) again (flaky).

    With ``reference``, the result must be the runtime's own: the reference runtime must
    pass it. That is checked once at the end; only if the reference fails the shrunk
    scenario is the shrinking redone, checking the reference at every step.
    """
    wanted = violated_pairs(violation.verdicts)
    runs = itertools.count()

    def ours(candidate: Scenario) -> list[Verdict] | None:
        return replay_violates(candidate, wanted, out / "shrink" / str(next(runs)), zygote)

    def reference_too(candidate: Scenario, got: list[Verdict]) -> bool:
        """Whatever ``candidate`` violates (``got``), the reference violates too."""
        assert reference is not None
        upstream = candidate.model_copy(update={"runtime": reference})
        theirs = replay_violates(upstream, wanted, out / "shrink" / str(next(runs)), zygote)
        return theirs is not None and not (violated_pairs(got) - violated_pairs(theirs))

    def only_ours(candidate: Scenario) -> list[Verdict] | None:
        got = ours(candidate)
        if got is None or (reference and reference_too(candidate, got)):
            return None
        return got

    verdicts = ours(violation.scenario)
    if verdicts is None:
        return None
    current, verdicts = _shrink(violation.scenario, verdicts, ours, log)
    if reference and reference_too(current, verdicts):
        log(f"{reference} fails the shrunk scenario too; shrinking again against it")
        current, verdicts = _shrink(violation.scenario, verdicts, only_ours, log)
    path = save_failure(current, verdicts, violation.path, "shrunk by replay")
    return Violation(current, verdicts, path)


def _shrink(
    current: Scenario,
    verdicts: list[Verdict],
    fails: Callable[[Scenario], list[Verdict] | None],
    log: Callable[[str], None],
) -> tuple[Scenario, list[Verdict]]:
    """Drop events one at a time while ``fails`` still holds, until none can go."""
    changed = True
    while changed:
        changed = False
        for i in reversed(range(len(current.events))):
            candidate = _without(current, i)
            if candidate is None:
                continue  # a later event needs this one (say, a join)
            got = fails(candidate)
            if got is not None:
                log(f"shrunk to {len(candidate.events)} event(s)")
                current, verdicts, changed = candidate, got, True
    return current, verdicts


def _without(scenario: Scenario, index: int) -> Scenario | None:
    events = scenario.events[:index] + scenario.events[index + 1 :]
    candidate = scenario.model_copy(update={"events": events})
    if plan_problems(candidate):
        return None
    return candidate.model_copy(update={"duration_s": judged_end(candidate)})


# -- driving them -------------------------------------------------------------------------


@dataclass
class FuzzResult:
    """What a fuzzing session did and found."""

    examples: int = 0
    batches: int = 0
    violation: Violation | None = None
    found_by: str | None = None  # model | stateful | differential
    first_failure_s: float | None = None
    elapsed_s: float = 0.0
    upstream: list[Violation] = field(default_factory=list)  # the reference fails them too
    flaky: list[Violation] = field(default_factory=list)  # seen live, not again on replay
    bringup_failures: list[str] = field(default_factory=list)  # live batches skipped
    log: list[str] = field(default_factory=list)


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
) -> FuzzResult:
    """Fuzz in batches until a violation is found (shrunk, saved) or the budget is spent.

    Without ``real``: the model fuzzer. With it: the stateful and the differential
    fuzzers take turns on live deployments of ``runtime``. When ``runtime`` is not the
    ``reference``, a violation the reference runtime shows on the same scenario is an
    upstream finding (kept in ``upstream``), not the runtime's, and fuzzing goes on.
    With ``seed``, every batch's examples are a function of it and the batch number.
    ``kinds``: the kinds of event the examples draw from (on live processes, the network
    kinds only where hosts can be emulated).
    """
    result, started = FuzzResult(), time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    chosen = list(fuzzers or (("stateful", "differential") if real else ("model",)))
    zygote = Zygote(runtime, out / "zygote.log") if real else None
    counter = itertools.count()
    draw_seed = random.Random(seed)
    avoid_known = bool(reference) and runtime != reference

    def note_example() -> None:
        result.examples += 1

    try:
        for fuzzer in itertools.cycle(chosen):
            if time.monotonic() - started >= budget_s:
                break
            batch_number = next(counter)
            batch_seed = draw_seed.getrandbits(64)
            seen: list[Violation] = []
            try:
                if fuzzer == "model":
                    _run_model_batch(out, max(batch, 50), batch_seed, note_example, kinds)
                elif fuzzer == "differential":
                    _run_differential_batch(
                        out, batch, batch_seed, runtime, zygote, note_example, avoid_known, kinds
                    )
                else:
                    machine = LiveDeployment.configured(
                        runtime=runtime,
                        out=out,
                        zygote=zygote,
                        variant=batch_number // len(chosen),
                        avoid_known=avoid_known,
                        counters=(note_example,),
                        seen=seen,
                        kind_pool=kinds,
                    )
                    test = get_state_machine_test(
                        machine,
                        settings=_settings(batch, shrink=False, stateful_step_count=step_count),
                    )
                    fix_seed(batch_seed)(test)()
            except Exception as found:  # Violation, ExceptionGroup, or a flaky live replay
                failed = None if seen else _bringup_failure(found)
                if failed is not None:  # the fixed base did not come up: not a finding
                    reason = str(failed).splitlines()[-1].strip()
                    result.bringup_failures.append(reason)
                    result.log.append(f"the live deployment did not come up ({reason}); skipped")
                    if len(result.bringup_failures) >= MAX_BRINGUP_FAILURES:
                        raise failed from found
                    continue
                violation = _first_violation(found, seen)
                if real and reference and runtime != reference:
                    ours = violated_pairs(violation.verdicts)
                    both = any(name == "conformance" for name, _ in ours)
                    upstream = violation.scenario.model_copy(update={"runtime": reference})
                    where = out / "reference" / str(batch_number)
                    theirs = violated_pairs(replay(upstream, where, zygote, both))
                    if not ours - theirs:
                        kept = out / f"upstream-{len(result.upstream) + 1}.yaml"
                        save_failure(violation.scenario, violation.verdicts, kept, "upstream")
                        result.upstream.append(
                            Violation(violation.scenario, violation.verdicts, kept)
                        )
                        result.log.append(f"{reference} fails it too: {kept}")
                        continue
                    violation = Violation(
                        violation.scenario,
                        [_only(v, ours - theirs) for v in violation.verdicts],
                        violation.path,
                    )
                found_at = time.monotonic() - started
                if real:
                    other = reference if reference != runtime else None
                    shrunk = minimize(violation, out, zygote, result.log.append, other)
                    if shrunk is None:
                        kept = out / f"flaky-{len(result.flaky) + 1}.yaml"
                        save_failure(violation.scenario, violation.verdicts, kept, "flaky")
                        result.flaky.append(Violation(violation.scenario, violation.verdicts, kept))
                        result.log.append(f"seen once, not again on replay (flaky): {kept}")
                        continue
                    violation = shrunk
                result.first_failure_s = found_at
                result.found_by = fuzzer
                result.violation = violation
                break
            finally:
                result.batches += 1
                if on_batch is not None:
                    on_batch(result, fuzzer)
    finally:
        if zygote is not None:
            zygote.stop()
        result.elapsed_s = time.monotonic() - started
    return result


def _only(verdict: Verdict, pairs: set[Pair]) -> Verdict:
    """A failed verdict kept only for the (property, world) pairs that are the runtime's."""
    if verdict.verdict != FAIL:
        return verdict
    named = verdict.worlds or (verdict.world,)
    worlds = tuple(w for w in named if w is not None and (verdict.name, w) in pairs)
    if not worlds:
        return replace(verdict, verdict=PASS, detail="the reference runtime fails it too")
    return replace(verdict, worlds=worlds, world=worlds[0])


def _bringup_failure(found: BaseException) -> BringUpFailed | None:
    """The ``BringUpFailed`` behind ``found`` (itself, in a group, or as its cause), if any."""
    if isinstance(found, BringUpFailed):
        return found
    inner: list[BaseException] = []
    if isinstance(found, BaseExceptionGroup):
        inner.extend(found.exceptions)
    inner.extend(e for e in (found.__cause__, found.__context__) if e is not None)
    return next((f for f in map(_bringup_failure, inner) if f is not None), None)


def _first_violation(found: BaseException, seen: list[Violation]) -> Violation:
    """The violation a batch met: the first a live example saw (Hypothesis's final replay
    of a live example may differ, even fail otherwise); else the one raised (Hypothesis
    groups distinct failures: any of them reproduces one). Anything else is re-raised."""
    if seen:
        return seen[0]
    if isinstance(found, Violation):
        return found
    if isinstance(found, BaseExceptionGroup):
        for inner in found.exceptions:
            if isinstance(inner, Violation):
                return inner
    raise found


def _run_model_batch(
    out: Path, examples: int, seed: int, count: Callable[[], None], kinds: tuple[Kind, ...]
) -> None:
    from hypothesis import given

    @fix_seed(seed)
    @_settings(examples)
    @given(scenarios(kinds=kinds))
    def batch(s: Scenario) -> None:
        count()
        check_model(s, out)

    batch()


def _run_differential_batch(
    out: Path,
    examples: int,
    seed: int,
    runtime: str,
    zygote: Zygote | None,
    count: Callable[[], None],
    avoid_known: bool,
    kinds: tuple[Kind, ...],
) -> None:
    from hypothesis import given

    @fix_seed(seed)
    @_settings(examples, shrink=False)
    @given(
        scenarios(
            max_workers=3,
            min_events=1,
            max_events=4,
            avoid_known=avoid_known,
            kinds=real_kinds(kinds),
        )
    )
    def batch(s: Scenario) -> None:
        count()
        check_differential(s, out, runtime, zygote)

    batch()
