"""The stateful fuzzer: ``LiveDeployment``, a Hypothesis state machine whose rules crash,
hang, slow, join, add and remove worlds on a *live* deployment, with the properties as
invariants after every step, and a teardown that must leave nothing behind.

Live examples steer clear of races their outcome would hang on (a silent fault lasting
about as long as the watchdog takes to see it), and of the runtime's declared known
findings (``Runtime.known_finding``). A live deployment that does not come up by the
runtime's doing is a find like any other (with no events)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import hypothesis.strategies as st
from hypothesis import seed as fix_seed
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    invariant,
    rule,
)

from mwsim import findings
from mwsim.checks import Verdict, check
from mwsim.errors import BringUpFailed, PlanError
from mwsim.events import Kind, parse_event
from mwsim.findings import FIRST_HEARTBEAT_S, KnownFinding
from mwsim.fuzz.budget import Budget, OutOfBudget
from mwsim.fuzz.options import Batch, OnKnown, Options, real_kinds, settings_for
from mwsim.fuzz.signatures import SCRATCH, Sig, Violation, failures, save_failure, signature
from mwsim.history import Cause, read_history
from mwsim.replay import Controller, RunStatus
from mwsim.replay.zygote import Zygote
from mwsim.runs import REFERENCE, ask_reference
from mwsim.scenario import Property, Scenario, parse_inline
from mwsim.strategies import FUZZ_KINDS, Proposer
from mwsim.timing import judged_end, model_for

#: The live deployments the stateful fuzzer starts from (batch n uses variant n).
LIVE_BASES = (
    "topology: {generator: fan_in, workers: 3, hosts: 2}\nworkload: {kind: stream}\n",
    "topology: {generator: fan_in, workers: 2, hosts: 1}\nworkload: {kind: request}\n",
    "topology: {generator: pipeline, stages: [2], hosts: 2}\nworkload: {kind: stream}\n",
    "topology: {generator: fan_in, workers: 3, hosts: 1}\nworkload: {kind: allreduce}\n",
)


#: A silent fault lasting within this of the watchdog's window is a race (reported or not).
RACE_MARGIN_S = 0.5


@dataclass(frozen=True)
class LiveHooks:
    """What a session tells its live examples: the known findings to steer around, and
    whom to tell of an example that showed only known signatures."""

    known: KnownFinding | None = None
    on_known: OnKnown | None = None
    budget: Budget = Budget()  # examples stop (unjudged) once it is spent
    reference: str | None = REFERENCE  # decides an unclear failed bring-up


@dataclass(frozen=True)
class LiveConfig:
    """How a ``LiveDeployment`` runs: which runtime, where (and on which cluster), which
    deployment (``variant`` of ``LIVE_BASES``) and kinds of event, how long a step waits,
    and what it shares with its session (``hooks``, ``counters``, ``seen``, ``covered``)."""

    runtime: str = "multiworld"
    out: Path = Path("out/fuzz")
    zygote: Zygote | None = None
    cluster: str | None = None
    variant: int = 0
    kind_pool: tuple[Kind, ...] = FUZZ_KINDS  # the kinds examples choose from
    step_s: float = 0.75
    #: Steer clear of known findings: the ``hooks``' own, or with ``avoid_known`` alone
    #: upstream MultiWorld's (``mwsim.findings``).
    avoid_known: bool = False
    hooks: LiveHooks = LiveHooks()
    counters: tuple[Callable[[], None], ...] = ()  # called once per example
    #: Every violation the examples met, first first (give a fresh list): live runs are
    #: not repeatable, so the one seen counts even if Hypothesis's final replay of the
    #: example goes another way.
    seen: list[Violation] = field(default_factory=list)
    #: Signatures already known: an example that shows only these goes on (the hooks'
    #: ``on_known`` hears of them once, at its end).
    covered: frozenset[Sig] = frozenset()


class LiveDeployment(RuleBasedStateMachine):
    """Rules act on live MultiWorld processes; after each step the properties must hold.

    Each step draws one enabled kind of event (or a wait) and asks the ``Proposer`` of
    :mod:`mwsim.strategies` for an event of that kind that is possible now: the same
    proposals as the scenario strategy, so every kind of the vocabulary is fuzzed live.
    Configure with ``LiveDeployment.configured(runtime=..., out=..., zygote=...)`` (the
    options of ``LiveConfig``).
    """

    config: ClassVar[LiveConfig] = LiveConfig()
    runs = itertools.count()

    @classmethod
    def configured(cls, **options: Any) -> type[LiveDeployment]:
        """A machine class with these ``LiveConfig`` options (Hypothesis makes the
        instances: the configuration is the class's)."""
        return type(cls.__name__, (cls,), {"config": LiveConfig(**options)})

    def __init__(self) -> None:
        super().__init__()
        self.config.hooks.budget.check()
        for count in self.config.counters:
            count()
        text = LIVE_BASES[self.config.variant % len(LIVE_BASES)] + "duration_s: 3600\n"
        base = parse_inline(text, name=f"live-{self.config.runtime}")
        base = base.model_copy(update={"runtime": self.config.runtime})
        self.oracle = base.membership()
        self.kinds: list[Kind] = []
        self.controller = Controller(
            base,
            self.config.out / "live-runs" / str(next(self.runs)),
            zygote=self.config.zygote,
            bringup_timeout_s=60,
            cluster=self.config.cluster,
        )
        self.finished = False
        self.violated = False
        self.aborted = False  # out of budget, or interrupted: torn down unjudged
        self.known_seen: frozenset[Sig] = frozenset()
        self.known = self.config.hooks.known or (
            findings.known_finding if self.config.avoid_known else None
        )
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
            hooks, zygote = self.config.hooks, self.config.zygote
            ask_reference(real, base, hooks.reference, zygote, cluster=self.config.cluster)
        verdicts = check(read_history(real.history), base)
        if not failures(verdicts):
            raise failed  # the harness's doing (or its lag): not a finding
        self._violated(base, verdicts)

    # -- stepping ------------------------------------------------------------------------

    def _allowed(self, kind: Kind, fields: dict[str, Any]) -> bool:
        """Not a race, nor an event that runs into a known finding (when steering around
        them)."""
        if racy(kind, fields, self.config.runtime):
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
        self.controller.advance(self.controller.now() + self.config.step_s)

    def _abortable(self, step: Callable[[], None]) -> None:
        """Take a step unless the budget is spent; a spent budget or an interrupt aborts
        the example (it is torn down, not judged)."""
        try:
            self.config.hooks.budget.check()
            step()
        except (OutOfBudget, KeyboardInterrupt):
            self.aborted = True
            raise

    @initialize(data=st.data())
    def swarm(self, data: st.DataObject) -> None:
        """Swarm testing: each example uses only some kinds of action, so that the
        interplay of a few is explored deeply instead of every kind shallowly. Every
        example starts with one of them (Hypothesis would often draw no step at all)."""
        pool = real_kinds(self.config.kind_pool, self.config.cluster)
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
        self._abortable(lambda: self.controller.advance(self.controller.now() + self.config.step_s))

    # -- judging -------------------------------------------------------------------------

    def _so_far(self, end: float) -> Scenario:
        return self.controller.scenario.model_copy(update={"duration_s": round(end, 3)})

    def _judge(self, scenario: Scenario, final: bool) -> None:
        history = read_history(self.controller.out / "history.jsonl")
        verdicts = check(history, scenario)
        if not final:
            verdicts = [v for v in verdicts if v.name != Property.HYGIENE]
        if not failures(verdicts):
            return
        sig = signature(verdicts)
        if sig and sig <= self.config.covered:  # only what is known: the example goes on
            self.known_seen |= sig
            return
        self._violated(scenario, verdicts)

    def _violated(self, scenario: Scenario, verdicts: list[Verdict]) -> NoReturn:
        """Keep what the example saw (``seen``) and raise it, lasting until its bounds."""
        self.violated = True
        replay = scenario.model_copy(update={"duration_s": judged_end(scenario)})
        scratch = self.config.out / SCRATCH / f"stateful-{self.config.runtime}.yaml"
        path = save_failure(replay, verdicts, scratch, "stateful")
        violation = Violation(replay, verdicts, path)
        self.config.seen.append(violation)
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
            if self.known_seen and self.config.hooks.on_known is not None:
                self.config.hooks.on_known(self.known_seen)

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


class StatefulFuzzer:
    """Rules on a live deployment, the properties as invariants (``LiveDeployment``)."""

    name = "stateful"
    real = True

    def run(self, batch: Batch, options: Options) -> None:
        machine = LiveDeployment.configured(
            runtime=options.runtime,
            out=options.out,
            zygote=options.zygote,
            cluster=options.cluster,
            variant=batch.turn,
            hooks=LiveHooks(options.known, batch.on_known, options.budget, options.reference),
            counters=(batch.count,),
            seen=batch.seen,
            kind_pool=batch.kinds,
            covered=batch.covered,
        )
        steps = settings_for(
            batch.size.examples, shrink=False, stateful_step_count=batch.size.steps
        )
        fix_seed(batch.seed)(get_state_machine_test(machine, settings=steps))()
