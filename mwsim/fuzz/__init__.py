"""The fuzzers: on the model, on live deployments (stateful), and both at once (differential),
and a session that reports every distinct bug it meets.

- ``check_model`` (:mod:`~mwsim.fuzz.oneshot`): a drawn scenario's simulated history must
  satisfy every property (the model and the checks agree with each other; fast).
- ``LiveDeployment`` (:mod:`~mwsim.fuzz.live`): a Hypothesis state machine acting on a
  *live* deployment, the properties as invariants after every step.
- ``check_differential`` (:mod:`~mwsim.fuzz.oneshot`): a drawn scenario run on the model and
  for real must pass and conform.

Each is a ``Fuzzer`` (:mod:`~mwsim.fuzz.options`); ``fuzz()`` (:mod:`~mwsim.fuzz.session`)
runs them in batches until its budget (:mod:`~mwsim.fuzz.budget`) is spent, keeping every
distinct failure by its signature (:mod:`~mwsim.fuzz.signatures`), shrunk by replay on real
processes (:mod:`~mwsim.fuzz.shrinking`); :mod:`~mwsim.fuzz.summary` prints what it found.
"""

from mwsim.findings import findings_in, known_for
from mwsim.fuzz.budget import GRACE_S, REPLAY_OVERHEAD_S, Budget, OutOfBudget
from mwsim.fuzz.live import LIVE_BASES, RACE_MARGIN_S, LiveConfig, LiveDeployment, LiveHooks, racy
from mwsim.fuzz.oneshot import check_differential, check_model
from mwsim.fuzz.options import Batch, BatchSize, Fuzzer, OnKnown, Options, real_kinds
from mwsim.fuzz.session import (
    FUZZERS,
    MAX_BRINGUP_FAILURES,
    MAX_FLAKY,
    Failure,
    FuzzResult,
    Session,
    fuzz,
    steer,
)
from mwsim.fuzz.shrinking import (
    FAILURE_TAIL_S,
    INTERRUPTED,
    UNCHECKED,
    UNCONFIRMED,
    UNSHRUNK,
    failure_time,
    minimize,
    replay,
    replay_violates,
)
from mwsim.fuzz.signatures import (
    Sig,
    Violation,
    describe,
    failures,
    reproduce_command,
    save_failure,
    signature,
)
from mwsim.strategies import FUZZ_KINDS

__all__ = [
    "FAILURE_TAIL_S",
    "FUZZERS",
    "FUZZ_KINDS",
    "GRACE_S",
    "INTERRUPTED",
    "LIVE_BASES",
    "MAX_BRINGUP_FAILURES",
    "MAX_FLAKY",
    "RACE_MARGIN_S",
    "REPLAY_OVERHEAD_S",
    "UNCHECKED",
    "UNCONFIRMED",
    "UNSHRUNK",
    "Batch",
    "BatchSize",
    "Budget",
    "Failure",
    "FuzzResult",
    "Fuzzer",
    "LiveConfig",
    "LiveDeployment",
    "LiveHooks",
    "OnKnown",
    "Options",
    "OutOfBudget",
    "Session",
    "Sig",
    "Violation",
    "check_differential",
    "check_model",
    "describe",
    "failure_time",
    "failures",
    "findings_in",
    "fuzz",
    "known_for",
    "minimize",
    "racy",
    "real_kinds",
    "replay",
    "replay_violates",
    "reproduce_command",
    "save_failure",
    "signature",
    "steer",
]
