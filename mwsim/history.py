"""The history of a run: timestamped events, one JSON object per line (README "Histories").

Both the simulator and the real replay write a history; the checkers read it. ``t`` is
seconds since the workload started (bring-up events before that are negative). Kinds
this module knows are validated field by field; other kinds are kept as they are, so
newer writers stay readable. A history can be read while it is being written
(``follow``): only complete lines are taken.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

from mwsim.errors import Problem, ProblemError


class Mode(StrEnum):
    """How a scenario was run: on the model, for real, or both (adding conformance)."""

    SIM = "sim"
    REAL = "real"
    BOTH = "both"


class Cause(StrEnum):
    """Whose doing a failed bring-up was (a ``bringup`` record's ``cause``): the runtime's
    is judged by the properties; the harness's (mwsim's own, or the machine's) makes the
    run inconclusive; an unclear one is decided by the reference runtime bringing up the
    same deployment (a ``reference`` record)."""

    RUNTIME = "runtime"
    HARNESS = "harness"
    UNCLEAR = "unclear"


_NUMBER = (int, float)
_NONE = type(None)

#: Required fields of the known kinds and the JSON types they may have.
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    # one op completed at ``worker`` in ``world``; ``ok``: its data checked out
    "op": {"world": (str,), "worker": (str,), "seq": (int,), "ok": (bool,)},
    # ops first..last completed evenly from t0 to t (the simulator's compact form)
    "ops": {"world": (str,), "worker": (str,), "first": (int,), "last": (int,), "t0": _NUMBER},
    "fault": {"do": (str,), "target": (str,)},
    "resumed": {"do": (str,), "target": (str,)},
    "scale": {"do": (str,)},
    "broken": {"world": (str,), "worker": (str,), "reason": (str,)},
    "joined": {"world": (str,), "worker": (str,)},
    "left": {"world": (str,), "worker": (str,)},
    "exit": {"worker": (str,), "code": (int, _NONE)},
    "phase": {"name": (str,)},
    "error": {"message": (str,)},
    "run": {"scenario": (str,), "mode": (str,)},
    "hygiene": {"ok": (bool,)},
    "agent": {"worker": (str,), "node": (str,)},
    "lag": {"source": (str,), "lag_s": _NUMBER},
    # the deployment did not come up: at which stage, whose doing, why
    "bringup": {"ok": (bool,), "stage": (str,), "cause": (str,), "reason": (str,)},
    # the reference runtime brought the same deployment up (served) or not (null: it
    # could not run here)
    "reference": {"runtime": (str,), "served": (bool, _NONE)},
}


@dataclass(frozen=True, slots=True)
class Event:
    """One history event: a time, a kind, and the kind's fields."""

    t: float
    kind: str
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __getitem__(self, key: str) -> Any:
        return self.attrs[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 6), "kind": self.kind, **self.attrs}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())  # the contract's spacing: users grep it


def event(t: float, kind: str, **attrs: Any) -> Event:
    """Build an event; ``event(3.0, "fault", do="crash", target="w2")``."""
    return Event(float(t), kind, MappingProxyType(attrs))


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number here
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, types)


def check_record(record: Any) -> str | None:
    """Why a decoded JSON line is not a valid event (None when it is)."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    t = record.get("t")
    if not _type_ok(t, _NUMBER):
        return "missing or invalid 't' (seconds since the workload started, a finite number)"
    kind = record.get("kind")
    if not isinstance(kind, str) or not kind:
        return "missing or invalid 'kind' (a non-empty string)"
    for name, types in SCHEMA.get(kind, {}).items():
        if name not in record:
            return f"{kind} event without '{name}'"
        if not _type_ok(record[name], types):
            wanted = " or ".join("null" if t is _NONE else t.__name__ for t in types)
            return f"{kind} event: '{name}' must be {wanted}, got {record[name]!r}"
    return None


def parse_line(text: str, path: str = "<history>", line: int = 1) -> Event:
    """One JSON line to an ``Event``; ``ProblemError`` with ``path:line`` if it is invalid."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProblemError([Problem(path, line, f"not valid JSON: {exc.msg}")]) from None
    problem = check_record(record)
    if problem is not None:
        raise ProblemError([Problem(path, line, problem)])
    attrs = {k: v for k, v in record.items() if k not in ("t", "kind")}
    return Event(float(record["t"]), record["kind"], MappingProxyType(attrs))


@dataclass
class History:
    """The events of one run, in time order (ties keep their written order)."""

    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events = sorted(self.events, key=lambda e: e.t)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def of_kind(self, *kinds: str) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

    @property
    def meta(self) -> Event | None:
        """The ``run`` event that opens a history, if any."""
        runs = self.of_kind("run")
        return runs[0] if runs else None

    def to_jsonl(self) -> str:
        return "".join(e.to_json() + "\n" for e in self.events)


def _lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    for number, text in enumerate(stream, start=1):
        if text.strip():
            yield number, text


def read_history(path: str | Path, *, max_problems: int = 20) -> History:
    """Read and validate a JSON-lines history; ``ProblemError`` lists bad lines."""
    events: list[Event] = []
    problems: list[Problem] = []
    try:
        with open(path, encoding="utf-8", errors="strict") as stream:
            for number, text in _lines(stream):
                try:
                    events.append(parse_line(text, str(path), number))
                except ProblemError as exc:
                    problems += exc.problems
                    if len(problems) >= max_problems:
                        break
    except UnicodeDecodeError:
        raise ProblemError([Problem(str(path), 1, "not a text file: invalid UTF-8")]) from None
    except OSError as exc:
        raise ProblemError([Problem(str(path), 1, f"cannot read: {exc.strerror}")]) from None
    if problems:
        raise ProblemError(problems)
    return History(events)


def follow(path: str | Path, stop: Callable[[], bool], poll_s: float = 0.05) -> Iterator[Event]:
    """Yield events as complete lines are appended to ``path`` until ``stop()`` is true
    and the file has no complete line left."""
    with open(path, encoding="utf-8") as stream:
        number, pending, stopping = 0, "", False
        while True:
            chunk = stream.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    number += 1
                    if pending.strip():
                        yield parse_line(pending, str(path), number)
                    pending = ""
                continue
            if stopping:
                return
            # once stop() holds, read to the end once more: lines written before it held
            # may have come after the last read
            stopping = stop()
            if not stopping:
                time.sleep(poll_s)


class HistoryWriter:
    """Appends events to a JSON-lines file, one flushed line each, so readers see them at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream: IO[str] = open(self.path, "w", encoding="utf-8")  # noqa: SIM115

    def write(self, item: Event, flush: bool = True) -> None:
        self._stream.write(item.to_json() + "\n")
        if flush:
            self._stream.flush()

    def flush(self) -> None:
        self._stream.flush()

    def write_all(self, items: Iterable[Event]) -> None:
        for item in items:
            self._stream.write(item.to_json() + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_history(path: str | Path, history: Iterable[Event]) -> None:
    with HistoryWriter(path) as writer:
        writer.write_all(history)


def append_history(path: str | Path, events: Iterable[Event]) -> None:
    """Add events at the end of a finished history (what was learnt after its run)."""
    with open(path, "a", encoding="utf-8") as stream:
        stream.writelines(e.to_json() + "\n" for e in events)
