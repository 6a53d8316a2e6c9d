"""Every error mwsim raises on purpose, under one base class ``MwsimError``.

``ProblemError`` is bad input (exit 2: nothing started); ``Inconclusive`` is an
environment that lacks what a run needs (exit 3: nothing started); ``BringUpFailed`` and
``ZygoteError`` are a deployment that did not come up. ``Interrupted`` is the one outside
the hierarchy: it is a ``KeyboardInterrupt`` (Ctrl-C or SIGTERM), so ``except Exception``
never swallows it.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class MwsimError(Exception):
    """Base class of mwsim's own errors."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an input file, at a 1-based line; printed ``path:line: message``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class ProblemError(MwsimError):
    """An input file has problems; carries every one found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


Loc = tuple[Any, ...]


class PlanError(MwsimError, ValueError):
    """A scenario's timeline is impossible; ``problems`` lists ``(data path, message)``."""

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(message for _, message in self.problems))


class Inconclusive(MwsimError):
    """The environment lacks what the run needs (a runtime, GPUs, ...); nothing was started."""


class RuntimeNotFound(Inconclusive, LookupError):
    """No runtime adapter is registered under the name asked for."""


class BringUpFailed(MwsimError):
    """The deployment did not come up (an agent died, a world did not form or serve, the
    fork server was lost). ``cause``: whose doing it was, ``runtime``, ``harness`` or
    ``unclear`` (``mwsim.history.Cause``)."""

    def __init__(self, reason: str, cause: str = "harness") -> None:
        super().__init__(reason)
        self.cause = cause


class ZygoteError(MwsimError):
    """The fork server could not start or stopped answering."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM reached the controller; raised where it waits, after which the
    teardown runs in full. ``signum`` is the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
