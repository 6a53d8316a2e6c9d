"""The history writer of a real run: every record stamped relative to the workload's start.

Agents and the controller stamp records with their monotonic clock (a record's ``t`` until
it is written). Until the workload's start ``t0`` is known (bring-up), records are held;
then they are written at ``t - t0`` (negative for bring-up), and flushed by the controller's loop at
least every ``FLUSH_EVERY_S``, so that a reader following the file sees every record
soon, and a crash of the controller loses at most that much.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mwsim.history import Broken, Fault, HistoryWriter, Op, Record

Clock = Callable[[], float]
R = TypeVar("R", bound=Record)

#: How stale the history file may be while a run goes on (it is complete at the end).
FLUSH_EVERY_S = 0.05


class Recorder:
    """Writes one run's history; ``open`` it first, ``close`` it last."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self.t0: float | None = None
        self.held: list[Record] = []
        self.counts = {"ops": 0, "broken": 0, "faults": 0}
        self._writer: HistoryWriter | None = None
        self._flushed_at = -1.0

    def open(self) -> None:
        self._writer = HistoryWriter(self.path)

    def record(self, record: Record) -> None:
        """Write one record stamped with the monotonic clock; before ``t0`` it is held."""
        if isinstance(record, Op):
            self.counts["ops"] += 1
        elif isinstance(record, Broken):
            self.counts["broken"] += 1
        elif isinstance(record, Fault):
            self.counts["faults"] += 1
        if self.t0 is None:
            self.held.append(record)
        else:
            self._write(record)

    def note(self, kind: type[R], mono: float | None = None, **fields: Any) -> R:
        """Record something the controller saw (now, unless ``mono`` says when)."""
        record = kind.of(self.clock() if mono is None else mono, **fields)
        self.record(record)
        return record

    def start(self, t0: float) -> None:
        """The workload starts at ``t0``: write what was held."""
        self.t0 = t0
        held, self.held = self.held, []
        for record in held:
            self._write(record)

    def since_t0(self) -> float:
        """Seconds since the workload started."""
        assert self.t0 is not None, "the workload has not started"
        return self.clock() - self.t0

    def _write(self, record: Record) -> None:
        assert self.t0 is not None and self._writer is not None
        self._writer.write(record.at(record.t - self.t0), flush=False)

    def flush(self, now: bool = False) -> None:
        """Write out what was recorded, at most every ``FLUSH_EVERY_S`` unless ``now``."""
        if self._writer is None:
            return
        at = self.clock()
        if now or at - self._flushed_at >= FLUSH_EVERY_S:
            self._writer.flush()
            self._flushed_at = at

    def close(self) -> None:
        """Write what is still held (stamped relative to now if the workload never started)."""
        if self.t0 is None:
            self.start(self.clock())
        if self._writer is not None:
            self._writer.close()
            self._writer = None
