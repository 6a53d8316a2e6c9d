"""A fuzzing session: the fuzzers in batches until the budget is spent, keeping every
distinct failure.

An example whose violations are all known already (*covered*) does not stop, so a bug that
shows in every example hides no other; each new failure is shrunk once and written under a
unique name with its report; and a failure that dominates (most examples hit it) has the
kinds of event that trigger it left out of every other batch (swarm-style), so rarer ones
surface. Fuzzing a runtime other than the reference (upstream MultiWorld), a violation
counts only if the reference, replaying the same scenario, does not show it too. A live
deployment that does not come up by the harness's doing is skipped.

The budget bounds the whole session: a replay starts only if it would end within it, the
live example under way stops once it is spent (``OutOfBudget``), and a find the budget left
no time for is kept as it was, its ``note`` saying so. Ctrl-C and SIGTERM stop a session the
same way; its summary so far is returned and kept beside its finds."""

from __future__ import annotations

import contextlib
import datetime
import itertools
import math
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mwsim import report
from mwsim.errors import BringUpFailed, Interrupted
from mwsim.events import Kind
from mwsim.findings import findings_in, known_for
from mwsim.fuzz.budget import Budget, OutOfBudget
from mwsim.fuzz.live import StatefulFuzzer
from mwsim.fuzz.oneshot import DifferentialFuzzer, ModelFuzzer
from mwsim.fuzz.options import Batch, BatchSize, Fuzzer, Options
from mwsim.fuzz.shrinking import INTERRUPTED, UNCHECKED, UNCONFIRMED, minimize, only, replay
from mwsim.fuzz.signatures import (
    Sig,
    Violation,
    describe,
    reproduce_command,
    save_failure,
    signature,
)
from mwsim.history import Mode
from mwsim.internal import jsonout
from mwsim.replay.signals import TRAPPED
from mwsim.replay.zygote import Zygote
from mwsim.scenario import Property
from mwsim.strategies import FUZZ_KINDS

#: Live batches whose deployment did not come up, skipped, before fuzzing gives up.
MAX_BRINGUP_FAILURES = 3


#: A failure dominates once it was hit by at least this share of the examples since it was
#: found (and by two of them at least).
DOMINANT_SHARE = 0.5


#: A signature whose shrinking found it flaky this often is no longer pursued.
MAX_FLAKY = 2


#: The fuzzers by name (``fuzz(fuzzers=...)``, ``mwsim fuzz --fuzzer``).
FUZZERS: dict[str, Fuzzer] = {
    f.name: f for f in (ModelFuzzer(), StatefulFuzzer(), DifferentialFuzzer())
}


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


class Session:
    """The failures a fuzzing session has met, and what to do with a new one."""

    def __init__(self, result: FuzzResult, options: Options, started: float) -> None:
        self.result, self.options, self.started = result, options, started
        self.covered: set[Sig] = set()
        self.flaky_tries: Counter[Sig] = Counter()
        self.stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.numbers: Counter[str] = Counter()
        self.replays = itertools.count()

    def _name(self, what: str) -> Path:
        """A file name no other session (and no other find of this one) uses."""
        while True:
            self.numbers[what] += 1
            path = self.options.out / f"{self.stamp}-{what}-{self.numbers[what]}.yaml"
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
        if real and self.options.reference:
            theirs = self._reference_shows(violation)
            if theirs is None:
                checked = False
            elif not new - theirs:
                kept = self._name(f"{self.options.runtime}-upstream")
                save_failure(violation.scenario, violation.verdicts, kept, "upstream")
                self.result.upstream.append(
                    Violation(violation.scenario, violation.verdicts, kept, mode=violation.mode)
                )
                self.covered |= new
                log(f"{self.options.reference} fails it too ({describe(new)}): {kept}")
                return
            else:
                new = new - theirs
                mine = violation.signature - theirs
                verdicts = [only(v, mine) for v in violation.verdicts]
                violation = Violation(
                    violation.scenario, verdicts, violation.path, mode=violation.mode
                )
        wanted = min(new)
        found_after = time.monotonic() - self.started
        if real and checked:
            try:
                o = self.options
                shrunk = minimize(
                    violation,
                    o.out,
                    o.zygote,
                    log,
                    reference=o.reference,
                    wanted=wanted,
                    known=o.known,
                    budget=o.budget,
                    cluster=o.cluster,
                )
            except KeyboardInterrupt:
                self._keep(violation, wanted, fuzzer, found_after, INTERRUPTED, real)
                raise
            if shrunk is None:
                self.flaky_tries[wanted] += 1
                if self.flaky_tries[wanted] >= MAX_FLAKY:
                    self.covered.add(wanted)
                kept = self._name(f"{self.options.runtime}-flaky")
                save_failure(violation.scenario, violation.verdicts, kept, "flaky")
                self.result.flaky.append(
                    Violation(violation.scenario, violation.verdicts, kept, mode=violation.mode)
                )
                log(f"seen once, not again on replay (flaky: {describe([wanted])}): {kept}")
                return
            violation = shrunk
        elif not checked:
            note = f"{UNCONFIRMED}; {UNCHECKED}"
            violation = Violation(
                violation.scenario, violation.verdicts, violation.path, note, mode=violation.mode
            )
        self._keep(violation, wanted, fuzzer, found_after, violation.note, real)

    def _keep(
        self, violation: Violation, wanted: Sig, fuzzer: str, after: float, note: str, real: bool
    ) -> None:
        """Write a new failure (and its report) and count it, known finding or new."""
        what = self.options.runtime if real else "model"
        path = save_failure(violation.scenario, violation.verdicts, self._name(what), fuzzer)
        found = Failure(
            frozenset((violation.signature - self.covered) | {wanted}),
            Violation(violation.scenario, violation.verdicts, path, note, mode=violation.mode),
            fuzzer,
            after,
            self.result.examples,
        )
        if real and self.options.known is not None:
            matches = findings_in(violation.scenario, self.options.known)
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
        self, fuzzer: Fuzzer, seed: int, turn: int, pool: tuple[Kind, ...], size: BatchSize
    ) -> None:
        """Run one batch of ``fuzzer`` drawing events of the ``pool``'s kinds; what it met
        is recorded (``OutOfBudget`` once the budget is spent, after recording what was
        met). A live deployment that did not come up by the harness's doing is skipped,
        up to ``MAX_BRINGUP_FAILURES`` times."""

        def count() -> None:
            self.result.examples += 1

        batch = Batch(seed, turn, pool, size, frozenset(self.covered), count, self.hit)
        try:
            fuzzer.run(batch, self.options)
        except OutOfBudget:
            for violation in batch.seen:  # met before the budget ran out
                self.record(violation, fuzzer.name, fuzzer.real)
            raise
        except Exception as found:  # Violation, ExceptionGroup, or a flaky live replay
            failed = None if batch.seen else _bringup_failure(found)
            if failed is None:
                for violation in _violations(found, batch.seen):
                    self.record(violation, fuzzer.name, fuzzer.real)
                return
            reason = str(failed).splitlines()[-1].strip()  # not the runtime's doing: skipped
            self.result.bringup_failures.append(reason)
            self.result.log.append(f"the live deployment did not come up ({reason}); skipped")
            if len(self.result.bringup_failures) >= MAX_BRINGUP_FAILURES:
                raise failed from found

    def commands(self, found: Failure) -> list[str]:
        """The ``mwsim run`` lines that replay a failure (and show the reference pass it)."""
        lines = [reproduce_command(found.path, self.options.runtime, found.mode)]
        if self.options.reference and found.mode is not Mode.SIM:
            passes = reproduce_command(found.path, self.options.reference, Mode.REAL)
            checked = not {UNCHECKED, UNCONFIRMED, INTERRUPTED} & set(found.note.split("; "))
            said = "the reference passes it" if checked else "the reference (not yet tried)"
            lines.append(f"{passes}  # {said}")
        return lines

    def _reference_shows(self, violation: Violation) -> frozenset[Sig] | None:
        """What the reference shows on the violation's scenario (None: no budget left for
        that replay)."""
        assert self.options.reference is not None
        upstream = violation.scenario.model_copy(update={"runtime": self.options.reference})
        if not self.options.budget.fits(upstream):
            return None
        both = any(name == Property.CONFORMANCE for name, _ in violation.signature)
        where = self.options.out / "reference" / str(next(self.replays))
        o = self.options
        return signature(replay(upstream, where, o.zygote, both, o.reference, o.cluster))


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
    cluster: str | None = None,
) -> FuzzResult:
    """Fuzz in batches until the budget is spent (or ``stop_after`` distinct failures are
    found), keeping every distinct failure (see the module doc).

    Without ``real``: the model fuzzer. With it: the stateful and the differential
    fuzzers take turns on live deployments of ``runtime``. When ``runtime`` is not the
    ``reference``, a violation the reference runtime shows on the same scenario is an
    upstream finding (kept in ``upstream``), not the runtime's. With ``seed``, every
    batch's examples are a function of it and the batch number. ``kinds``: the kinds of
    event the examples draw from (on live processes, the network kinds only where hosts
    can be emulated). ``cluster``: live runs place their agents on this Ray cluster.

    The budget bounds everything, shrinking and replays included: no replay starts that
    would not end within it, and the example under way stops when it is spent (the session
    ends within ``GRACE_S`` of it). Ctrl-C or SIGTERM stops the session too: the result so
    far is returned with ``interrupted`` set. Either way its summary is kept in
    ``OUT/<session start>-summary.json``.
    """
    result, started = FuzzResult(budget_s=budget_s), time.monotonic()
    budget = Budget(started + budget_s)
    out.mkdir(parents=True, exist_ok=True)
    names = fuzzers or (("stateful", "differential") if real else ("model",))
    chosen = [FUZZERS[name] for name in names]
    counter = itertools.count()
    draw_seed = random.Random(seed)
    other = reference if real and reference and reference != runtime else None
    known = known_for(runtime, other) if real else None
    zygote: Zygote | None = None  # one fork server for every live run of the session
    options = Options(out, runtime, other, None, cluster, known, budget)
    session = Session(result, options, started)
    size = BatchSize(batch, step_count)
    try:
        with _interruptible():
            if real and cluster is None:  # on a cluster, the nodes fork
                zygote = Zygote(runtime, out / "zygote.log")
                session.options = replace(options, zygote=zygote)
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
                        on_batch(result, fuzzer.name)
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
