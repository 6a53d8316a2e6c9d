"""The one-shot fuzzers: a drawn scenario on the model (``check_model``: the model and the
checks agree with each other), and on the model and for real at once
(``check_differential``: both pass and conform)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import seed as fix_seed

from mwsim.checks import FAIL, Verdict, check, judge
from mwsim.fuzz.budget import Budget, OutOfBudget
from mwsim.fuzz.options import Batch, OnKnown, Options, real_kinds, settings_for
from mwsim.fuzz.signatures import SCRATCH, Sig, Violation, save_failure, signature
from mwsim.history import Mode
from mwsim.replay.zygote import Zygote
from mwsim.runs import REFERENCE, run_scenario
from mwsim.scenario import Scenario
from mwsim.sim import simulate
from mwsim.strategies import scenarios
from mwsim.timing import RuntimeModel


def new_or_known(
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
    if overall == FAIL and new_or_known(verdicts, covered, on_known):
        path = save_failure(scenario, verdicts, out / SCRATCH / "model.yaml", "model")
        raise Violation(scenario, verdicts, path, mode=Mode.SIM)


def check_differential(
    scenario: Scenario,
    out: Path,
    runtime: str = "multiworld",
    zygote: Zygote | None = None,
    covered: frozenset[Sig] = frozenset(),
    on_known: OnKnown | None = None,
    budget: Budget = Budget(),
    reference: str | None = REFERENCE,
    cluster: str | None = None,
) -> None:
    """``scenario`` run on the model and for real (with ``runtime``, on ``cluster`` if
    given) must pass and conform (``reference``: the runtime that decides an unclear
    failed bring-up)."""
    if not budget.fits(scenario):
        raise OutOfBudget
    drawn = scenario.model_copy(update={"runtime": runtime, "name": f"fuzz-{runtime}"})
    where = out / "last-run"
    outcome = run_scenario(
        drawn, mode=Mode.BOTH, out_dir=where, zygote=zygote, reference=reference, cluster=cluster
    )
    if outcome.verdict == FAIL and new_or_known(outcome.verdicts, covered, on_known):
        scratch = out / SCRATCH / f"differential-{runtime}.yaml"
        path = save_failure(drawn, outcome.verdicts, scratch, "differential")
        raise Violation(drawn, outcome.verdicts, path, mode=Mode.BOTH)


class ModelFuzzer:
    """Drawn scenarios on the model: every property must hold (fast, many examples)."""

    name = "model"
    real = False

    def run(self, batch: Batch, options: Options) -> None:
        from hypothesis import given

        @fix_seed(batch.seed)
        @settings_for(max(batch.size.examples, 50))
        @given(scenarios(kinds=batch.kinds))
        def examples(s: Scenario) -> None:
            batch.count()
            check_model(
                s,
                options.out,
                covered=batch.covered,
                on_known=batch.on_known,
                budget=options.budget,
            )

        examples()


class DifferentialFuzzer:
    """Drawn scenarios on the model and for real: both must pass and conform."""

    name = "differential"
    real = True

    def run(self, batch: Batch, options: Options) -> None:
        from hypothesis import given

        kinds = real_kinds(batch.kinds, options.cluster)
        drawn = scenarios(
            max_workers=3,
            min_events=1,
            max_events=4,
            avoid_known=options.known or False,
            kinds=kinds,
        )

        @fix_seed(batch.seed)
        @settings_for(batch.size.examples, shrink=False)
        @given(drawn)
        def examples(s: Scenario) -> None:
            batch.count()
            check_differential(
                s,
                options.out,
                options.runtime,
                options.zygote,
                batch.covered,
                batch.on_known,
                options.budget,
                options.reference,
                options.cluster,
            )

        examples()
