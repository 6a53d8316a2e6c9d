"""What a fuzzing session's fuzzers share: the session's ``Options``, one ``Batch`` of a
fuzzer, and the ``Fuzzer`` protocol every fuzzer (model, stateful, differential) keeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hypothesis import HealthCheck, Phase, settings

from mwsim.events import Kind
from mwsim.findings import KnownFinding
from mwsim.fuzz.budget import Budget
from mwsim.fuzz.signatures import Sig, Violation
from mwsim.hosts import emulated
from mwsim.replay.zygote import Zygote
from mwsim.runs import REFERENCE
from mwsim.strategies import FUZZ_KINDS

#: Called with the signature of an example whose violations were all covered already.
OnKnown = Callable[[frozenset[Sig]], None]


@dataclass(frozen=True)
class Options:
    """What every part of a fuzzing session shares: where finds go, what runs and where,
    what decides an unclear failure, what to steer around, and when to stop."""

    out: Path = Path("out/fuzz")
    runtime: str = "multiworld"
    #: The reference runtime: a violation it shows too is upstream's; it decides an
    #: unclear failed bring-up (None: the runtime fuzzed is the reference).
    reference: str | None = REFERENCE
    zygote: Zygote | None = None  # one warm fork server for every live run (None: each its own)
    cluster: str | None = None  # live runs on this Ray cluster (``--cluster``)
    known: KnownFinding | None = None  # known findings to steer around
    budget: Budget = Budget()


@dataclass(frozen=True)
class BatchSize:
    """How many examples a batch runs, and how many steps a live example takes at most."""

    examples: int = 5
    steps: int = 5


@dataclass
class Batch:
    """One batch of a fuzzer: its seed and turn, the kinds of event it draws from, and what
    it tells the session (examples counted, known signatures hit, violations met live)."""

    seed: int
    turn: int
    kinds: tuple[Kind, ...]
    size: BatchSize
    covered: frozenset[Sig] = frozenset()  # signatures known already: examples go on
    count: Callable[[], None] = lambda: None  # called once per example
    on_known: OnKnown | None = None
    seen: list[Violation] = field(default_factory=list)  # what live examples met


class Fuzzer(Protocol):
    """One way of drawing examples and judging them; ``run`` raises what a batch met
    (``Violation``, a group of them), ``OutOfBudget`` once the budget is spent."""

    name: str  # model | stateful | differential
    real: bool  # on live processes

    def run(self, batch: Batch, options: Options) -> None: ...


def real_kinds(
    kinds: tuple[Kind, ...] = FUZZ_KINDS, cluster: str | None = None
) -> tuple[Kind, ...]:
    """Those of ``kinds`` a fuzzer can inject into live processes here (network kinds
    need emulated hosts; on a ``cluster``, the local one's, and never ``power_off``, which
    would cut a node's host actor off)."""
    if cluster:
        kinds = tuple(k for k in kinds if k is not Kind.POWER_OFF)
        if cluster != "auto":
            return tuple(k for k in kinds if not k.info.network)
    if emulated.unavailable() is None:
        return kinds
    return tuple(k for k in kinds if not k.info.network)


def settings_for(examples: int, shrink: bool = True, **extra: Any) -> settings:
    """Hypothesis's settings for a batch: no deadline, no database, no health check."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        **extra,
    )
