"""The history of a run: typed records, one JSON object per line (docs/scenarios.md, "Histories").

Both the simulator and the real replay write a history; the checkers read it. Each record
kind is a frozen dataclass (``Op``, ``Fault``, ``Broken`` ...) with the fields of its
kind; fields a kind does not declare (an event's parameters, a newer writer's fields)
are kept in ``extra``, and kinds this module does not know are kept as ``Unknown``, so
newer writers stay readable. ``t`` is seconds since the workload started (bring-up
records before that are negative). A history can be read while it is being written
(``follow``): only complete lines are taken.
"""

from __future__ import annotations

import json
import math
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, ClassVar, TypeVar

from mwsim.errors import Problem, ProblemError


class Mode(StrEnum):
    """How a scenario was run: on the model, for real, or both (adding conformance)."""

    SIM = "sim"
    REAL = "real"
    BOTH = "both"


class Cause(StrEnum):
    """Whose doing a failed bring-up was (a ``Bringup`` record's ``cause``): the runtime's
    is judged by the properties; the harness's (mwsim's own, or the machine's) makes the
    run inconclusive; an unclear one is decided by the reference runtime bringing up the
    same deployment (a ``Reference`` record)."""

    RUNTIME = "runtime"
    HARNESS = "harness"
    UNCLEAR = "unclear"


class Stage(StrEnum):
    """The stages of bring-up (a ``Bringup`` record's ``stage``): the sites opened (fork
    servers up), every initial world formed, every initial world served an op."""

    OPEN = "open"
    FORM = "form"
    SERVE = "serve"


class Source(StrEnum):
    """Who wrote an ``Error`` or ``Lag`` record: the runtime under test raised, or the
    harness (an agent, the controller) failed or fell behind."""

    RUNTIME = "runtime"
    HARNESS = "harness"
    AGENT = "agent"
    CONTROLLER = "controller"
    CPU = "cpu"  # a ``Lag``: the machine's CPU was saturated


class PhaseName(StrEnum):
    """The ``Phase`` records: the workload stopped, or the run was interrupted."""

    STOP = "stop"
    INTERRUPTED = "interrupted"


EMPTY: Mapping[str, Any] = MappingProxyType({})

R = TypeVar("R", bound="Record")


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One history record: when (``t``), its kind's fields, and fields it does not declare
    (``extra``). A field left at its default is not written."""

    KIND: ClassVar[str] = ""
    #: JSON types of each field, from the annotations (filled in by ``_kind``).
    TYPES: ClassVar[dict[str, tuple[type, ...]]] = {}
    #: Each field's name and default (``MISSING``: required), in order.
    DEFAULTS: ClassVar[tuple[tuple[str, Any], ...]] = ()

    t: float
    extra: Mapping[str, Any] = field(default_factory=lambda: EMPTY, compare=False)

    @property
    def kind(self) -> str:
        return self.KIND

    @classmethod
    def of(cls: type[R], t: float, **values: Any) -> R:
        """Build one from fields: declared fields by name, any other into ``extra``."""
        own = {k: v for k, v in values.items() if k in cls.TYPES}
        rest = {k: v for k, v in values.items() if k not in cls.TYPES}
        return cls(t=float(t), extra=MappingProxyType(rest) if rest else EMPTY, **own)

    def at(self: R, t: float) -> R:
        """The same record at another time."""
        return replace(self, t=t)

    @property
    def attrs(self) -> dict[str, Any]:
        """Every field as written (declared and extra), without ``t`` and ``kind``."""
        out: dict[str, Any] = {}
        for name, default in self.DEFAULTS:
            value = getattr(self, name)
            if default is MISSING or value != default:
                out[name] = list(value) if isinstance(value, tuple) else value
        out.update(self.extra)
        return out

    def __getitem__(self, key: str) -> Any:
        """A field by its JSON name (for users' tests; mwsim's own code reads attributes)."""
        attrs = self.attrs
        if key in attrs:
            return attrs[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 6), "kind": self.kind, **self.attrs}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())  # the contract's spacing: users grep it


_NONE = type(None)
_NUMBER = (int, float)
KINDS: dict[str, type[Record]] = {}


def _json_types(hint: Any) -> tuple[type, ...]:
    """The JSON types a field's annotation admits (a float admits an int)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _json_types(arg))
    if hint is float:
        return _NUMBER
    if hint is None or hint is _NONE:
        return (_NONE,)
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return (list,)
    if origin is dict:
        return (dict,)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return (str,)
    return (hint,)


def _kind(cls: type[R]) -> type[R]:
    """Register a record kind: its JSON types and its name in ``KINDS``."""
    hints = typing.get_type_hints(cls)
    own = [f for f in fields(cls) if f.name not in ("t", "extra")]
    cls.TYPES = {f.name: _json_types(hints[f.name]) for f in own}
    cls.DEFAULTS = tuple((f.name, f.default) for f in own)
    KINDS[cls.KIND] = cls
    return cls


# -- the kinds ----------------------------------------------------------------------------


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Op(Record):
    """One op completed at ``worker`` in ``world`` (``ok``: its data checked out)."""

    KIND = "op"
    world: str
    worker: str
    seq: int
    ok: bool
    life: int | None = None  # the world's incarnation (None: the latest by ``t``)
    peer: str | None = None  # whose data it carried (a stream's other end)
    latency_s: float | None = None


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Ops(Record):
    """Ops ``first``..``last`` completed evenly from ``t0`` to ``t`` (the model's compact form)."""

    KIND = "ops"
    world: str
    worker: str
    first: int
    last: int
    t0: float
    life: int | None = None
    peer: str | None = None


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted(Record):
    """The frontend admitted request ``rid`` (the serve workload), at ``t``."""

    KIND = "admitted"
    rid: int
    worker: str  # the frontend


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Answered(Record):
    """Request ``rid`` was answered at ``t``: ``right`` is whether its output was the one
    expected, ``tries`` how many attempts it took, ``path`` the replicas of the attempt
    that answered (one per stage)."""

    KIND = "answered"
    rid: int
    worker: str
    right: bool
    latency_s: float
    tries: int = 1
    path: tuple[str, ...] = ()


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Unserved(Record):
    """Request ``rid`` was failed at ``t`` with ``reason`` (its timeout passed, or no
    replica was left to try) after ``tries`` attempts."""

    KIND = "unserved"
    rid: int
    worker: str
    reason: str
    tries: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Acted(Record):
    """What the harness did to the system (a fault, or its end), and whether it was
    seen to take effect (``confirmed``, after ``confirm_s``; ``detail``: why not)."""

    do: str
    target: str
    confirmed: bool | None = None
    confirm_s: float | None = None
    detail: str | None = None


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Fault(Acted):
    """A fault was injected; the event's own parameters (``for_s``, ``delay_ms`` ...) are
    in ``extra``."""

    KIND = "fault"


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed(Acted):
    """A lasting fault ended (the process continued, the partition healed ...)."""

    KIND = "resumed"


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Scale(Record):
    """A membership change was asked for; its parameters (``world``, ``worker`` ...) are in
    ``extra``."""

    KIND = "scale"
    do: str
    target: str | None = None


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Broken(Record):
    """``worker`` reported ``world`` broken. The model predicts a ``window`` instead of an
    instant, and marks a report it may or may not see ``optional``."""

    KIND = "broken"
    world: str
    worker: str
    reason: str
    life: int | None = None
    raised: str | None = None  # the exception the runtime raised (None: its query said so)
    op: str | None = None
    window: tuple[float, float] | None = None
    optional: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberChange(Record):
    """``worker``'s membership of ``world`` changed."""

    world: str
    worker: str
    life: int | None = None


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Joined(MemberChange):
    """``worker`` completed joining ``world``."""

    KIND = "joined"


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Left(MemberChange):
    """``worker`` left ``world`` (removed it, or the world was wound down)."""

    KIND = "left"


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Exit(Record):
    """A worker's process ended (``code`` None: unknown); ``expected``: mwsim ended it."""

    KIND = "exit"
    worker: str
    code: int | None
    expected: bool | None = None
    detail: str | None = None


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Phase(Record):
    """The run reached a phase (``PhaseName``)."""

    KIND = "phase"
    name: str


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Record):
    """Something raised: the runtime (``source`` runtime, judged by ``errors``) or the
    harness itself."""

    KIND = "error"
    message: str
    worker: str | None = None
    world: str | None = None
    life: int | None = None
    source: str | None = None
    op: str | None = None
    exception: str | None = None


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Run(Record):
    """What ran: the first record of a history; the environment's facts (``backend``,
    ``torch`` ...) are in ``extra`` beside the declared ones."""

    KIND = "run"
    scenario: str
    mode: str
    runtime: str | None = None
    runtime_package: dict[str, Any] | None = None  # its version and where it loads from
    torch: str | None = None
    digest: str | None = None  # ``Scenario.digest()`` of the scenario as it ran


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Hygiene(Record):
    """Whether the run left nothing behind (the last record)."""

    KIND = "hygiene"
    ok: bool
    detail: str | None = None


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Agent(Record):
    """Where a worker's agent runs (a cluster node)."""

    KIND = "agent"
    worker: str
    node: str


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Lag(Record):
    """The harness fell behind by ``lag_s`` (or the machine was busy: ``share``)."""

    KIND = "lag"
    source: str
    lag_s: float
    worker: str | None = None
    detail: str | None = None


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Bringup(Record):
    """The deployment did not come up: at which stage, whose doing (``Cause``), why."""

    KIND = "bringup"
    ok: bool
    stage: str
    cause: str
    reason: str
    waiting: tuple[str, ...] | None = None
    stalled_s: float | None = None


@_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class Reference(Record):
    """The reference runtime brought the same deployment up (``served``) or not (None: it
    could not run here)."""

    KIND = "reference"
    runtime: str
    served: bool | None
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown(Record):
    """A record of a kind this version does not know, kept as it was written."""

    name: str

    @property
    def kind(self) -> str:
        return self.name

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.extra)


def record(t: float, kind: str, **values: Any) -> Record:
    """Build a record by its kind's name: ``record(3.0, "fault", do="crash", target="w2")``."""
    cls = KINDS.get(kind)
    if cls is None:
        return Unknown(t=float(t), name=kind, extra=MappingProxyType(values))
    return cls.of(t, **values)


#: The name of earlier versions, kept for users' code (``mwsim.Event`` is ``Record``).
event = record


# -- reading and writing ------------------------------------------------------------------


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number here
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, types)


def _wanted(types: tuple[type, ...]) -> str:
    names = {_NONE: "null", list: "a list", int: "int", float: "float"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def check_record(data: Any) -> str | None:
    """Why a decoded JSON line is not a valid record (None when it is)."""
    if not isinstance(data, dict):
        return f"expected a JSON object, got {type(data).__name__}"
    t = data.get("t")
    if not _type_ok(t, _NUMBER):
        return "missing or invalid 't' (seconds since the workload started, a finite number)"
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        return "missing or invalid 'kind' (a non-empty string)"
    cls = KINDS.get(kind)
    if cls is None:
        return None
    for name, default in cls.DEFAULTS:
        if name not in data:
            if default is MISSING:
                return f"{kind} event without '{name}'"
            continue
        types = cls.TYPES[name]
        if not _type_ok(data[name], types):
            return f"{kind} event: '{name}' must be {_wanted(types)}, got {data[name]!r}"
    return None


def from_dict(data: Any) -> Record:
    """A decoded JSON line as its record; ``ValueError`` saying why if it is not one."""
    problem = check_record(data)
    if problem is not None:
        raise ValueError(problem)
    values = {k: v for k, v in data.items() if k not in ("t", "kind")}
    cls = KINDS.get(data["kind"])
    if cls is not None:
        for name, types in cls.TYPES.items():
            if types[0] is list and isinstance(values.get(name), list):
                values[name] = tuple(values[name])
    return record(data["t"], data["kind"], **values)


def parse_line(text: str, path: str = "<history>", line: int = 1) -> Record:
    """One JSON line to its record; ``ProblemError`` with ``path:line`` if it is invalid."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProblemError([Problem(path, line, f"not valid JSON: {exc.msg}")]) from None
    try:
        return from_dict(data)
    except ValueError as exc:
        raise ProblemError([Problem(path, line, str(exc))]) from None


@dataclass
class History:
    """The records of one run, in time order (ties keep their written order)."""

    events: list[Record] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events = sorted(self.events, key=lambda e: e.t)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def of(self, *kinds: type[R]) -> list[R]:
        """The records of these kinds, in time order."""
        return [e for e in self.events if isinstance(e, kinds)]

    def first(self, kind: type[R]) -> R | None:
        return next((e for e in self.events if isinstance(e, kind)), None)

    def of_kind(self, *kinds: str) -> list[Record]:
        """The records of these kinds, by name (for users' code)."""
        return [e for e in self.events if e.kind in kinds]

    @property
    def meta(self) -> Run | None:
        """The ``Run`` record that opens a history, if any."""
        return self.first(Run)

    def to_jsonl(self) -> str:
        return "".join(e.to_json() + "\n" for e in self.events)


def _lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    for number, text in enumerate(stream, start=1):
        if text.strip():
            yield number, text


def read_history(path: str | Path, *, max_problems: int = 20) -> History:
    """Read and validate a JSON-lines history; ``ProblemError`` lists bad lines."""
    events: list[Record] = []
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


def follow(path: str | Path, stop: Callable[[], bool], poll_s: float = 0.05) -> Iterator[Record]:
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

    def write(self, item: Record, flush: bool = True) -> None:
        self._stream.write(item.to_json() + "\n")
        if flush:
            self._stream.flush()

    def flush(self) -> None:
        self._stream.flush()

    def write_all(self, items: Iterable[Record]) -> None:
        for item in items:
            self._stream.write(item.to_json() + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_history(path: str | Path, history: Iterable[Record]) -> None:
    with HistoryWriter(path) as writer:
        writer.write_all(history)


def append_history(path: str | Path, events: Iterable[Record]) -> None:
    """Add events at the end of a finished history (what was learnt after its run)."""
    with open(path, "a", encoding="utf-8") as stream:
        stream.writelines(e.to_json() + "\n" for e in events)
