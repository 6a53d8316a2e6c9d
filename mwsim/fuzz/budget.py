"""A fuzzing session's budget: when it must end, and what stops it then."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from mwsim.scenario import Scenario

#: What a replay takes beyond its scenario's duration (bring-up, wind-down, judging): a
#: replay is started only if it ends within the budget by this estimate.
REPLAY_OVERHEAD_S = 3.0


#: How far past its budget a session may end (docs/fuzzing.md): the live step under way
#: and its teardown, or a replay that took longer than its estimate.
GRACE_S = 15.0


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
