"""When the replay acts, and how it knows an action took: a schedule and confirmations.

Both run on an injectable clock (monotonic seconds), so their logic is tested without
processes or sleeping. ``Schedule`` holds the plan's actions (:mod:`mwsim.playback`) in
order, relative to the workload's start. ``Confirmations`` holds each fault or heal until
its check holds (confirmed, with ``confirm_s``) or its deadline passes (not confirmed),
then writes its record stamped with the instant the action began.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mwsim.history import Acted
from mwsim.playback import Action

Clock = Callable[[], float]


class Schedule:
    """Actions waiting for their time (seconds after the workload's start)."""

    def __init__(self) -> None:
        self._heap: list[Action] = []

    def add(self, actions: Iterable[Action]) -> None:
        for action in actions:
            heapq.heappush(self._heap, action)

    def next_at(self) -> float | None:
        """When the next action is due (None: nothing left)."""
        return self._heap[0].at if self._heap else None

    def pop_due(self, now: float) -> Action | None:
        """The next action if it is due at ``now``, else None."""
        if self._heap and self._heap[0].at <= now:
            return heapq.heappop(self._heap)
        return None

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class Pending:
    """An action waiting for its confirmation."""

    record: Acted  # the history record to write (stamped when decided)
    began: float  # the clock when the action began: the record's instant
    check: Callable[[], bool]
    deadline: float
    why_not: Callable[[], dict[str, Any]] | None = None  # fields to add when unconfirmed


class Confirmations:
    """Actions whose effect is not yet confirmed; ``settle`` writes those that are decided."""

    def __init__(self, clock: Clock, write: Callable[[Acted], None]) -> None:
        self.clock = clock
        self.write = write
        self.pending: list[Pending] = []

    def expect(
        self,
        record: Acted,
        began: float,
        check: Callable[[], bool],
        within_s: float,
        why_not: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """Wait up to ``within_s`` for ``check`` to hold, then write ``record`` (with the
        fields ``why_not`` gives, if it did not)."""
        self.pending.append(Pending(record, began, check, began + within_s, why_not))

    def settle(self) -> None:
        """Write every pending record whose check holds now or whose deadline passed."""
        now = self.clock()
        for item in list(self.pending):
            ok = item.check()
            if ok or now >= item.deadline:
                self.pending.remove(item)
                fields = dict(item.record.attrs, confirmed=ok)
                fields["confirm_s"] = round(now - item.began, 4) if ok else None
                if not ok and item.why_not is not None:
                    fields.update(item.why_not())
                self.write(type(item.record).of(item.began, **fields))

    def deadline(self) -> float | None:
        """When the last pending decision falls due (None: nothing pending)."""
        return max((p.deadline for p in self.pending), default=None)

    def __bool__(self) -> bool:
        return bool(self.pending)
