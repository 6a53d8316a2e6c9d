"""The history writer of a real run: every record stamped relative to the workload's start.

Agents and the controller stamp records with their monotonic clock (``mono``). Until the
workload's start ``t0`` is known (bring-up), records are held; then they are written
with ``t = mono - t0`` (negative for bring-up), and flushed by the controller's loop at
least every ``FLUSH_EVERY_S``, so that a reader following the file sees every record
soon, and a crash of the controller loses at most that much.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mwsim.history import Event, HistoryWriter

Clock = Callable[[], float]

#: How stale the history file may be while a run goes on (it is complete at the end).
FLUSH_EVERY_S = 0.05


class Recorder:
    """Writes one run's history; ``open`` it first, ``close`` it last."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self.t0: float | None = None
        self.held: list[dict[str, Any]] = []
        self.counts = {"ops": 0, "broken": 0, "faults": 0}
        self._writer: HistoryWriter | None = None
        self._flushed_at = -1.0

    def open(self) -> None:
        self._writer = HistoryWriter(self.path)

    def record(self, record: dict[str, Any]) -> None:
        """Write one record (with ``kind`` and ``mono``); before ``t0`` it is held."""
        kind = record.get("kind")
        if kind == "op":
            self.counts["ops"] += 1
        elif kind == "broken":
            self.counts["broken"] += 1
        elif kind == "fault":
            self.counts["faults"] += 1
        if self.t0 is None:
            self.held.append(record)
        else:
            self._write(record)

    def note(self, kind: str, mono: float | None = None, **attrs: Any) -> None:
        """Record something the controller saw (now, unless ``mono`` says when)."""
        self.record({"kind": kind, "mono": self.clock() if mono is None else mono, **attrs})

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

    def _write(self, record: dict[str, Any]) -> None:
        assert self.t0 is not None and self._writer is not None
        attrs = {k: v for k, v in record.items() if k not in ("mono", "kind", "type")}
        self._writer.write(Event(record["mono"] - self.t0, record["kind"], attrs), flush=False)

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
