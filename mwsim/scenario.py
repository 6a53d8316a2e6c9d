"""The scenario file (format version 1): schema, load with located errors, dump.

A scenario is the unit of replay: a topology, a workload, a timeline of events (their
schemas are in :mod:`mwsim.events`) and what to expect. Loading finds every problem
before anything runs and reports each as ``path:line: message`` (the line of the
offending value); the schema is checked by pydantic, the timeline by
:mod:`mwsim.membership`. A loaded scenario carries its ``Plan``, computed once.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import random
import re
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    model_serializer,
)
from pydantic_core import ErrorDetails

from mwsim import topology as topo
from mwsim.errors import Loc, PlanError, Problem, ProblemError
from mwsim.events import DETECTABLE, SCHEMAS, AnyEvent, Event
from mwsim.internal.fields import Count, Duration, Name, Strict
from mwsim.internal.yamlsource import Source, load_source
from mwsim.membership import Membership, Plan, WorldLife, members_problems

FORMAT_VERSION = 1
T = TypeVar("T")


class Property(StrEnum):
    """The properties a run is judged by (``expect.violations`` names them)."""

    PROGRESS = "progress"
    DETECTION = "detection"
    NO_FALSE_ALARM = "no_false_alarm"
    INTEGRITY = "integrity"
    SCALE_OUT = "scale_out"
    HYGIENE = "hygiene"
    RECOVERY = "recovery"
    SURVIVAL = "survival"
    ERRORS = "errors"
    SERVED = "served"  # the serve workload's requests (only it is judged by these three)
    SLO = "slo"
    GOODPUT = "goodput"
    CONFORMANCE = "conformance"


#: The properties of requests, judged only for the ``serve`` workload.
REQUEST_PROPERTIES = (Property.SERVED, Property.SLO, Property.GOODPUT)


# -- topology -----------------------------------------------------------------------------


class FanInSpec(Strict):
    """A ``leader`` plus ``w1..wN``, one world per worker, optionally over K hosts."""

    generator: Literal["fan_in"]
    workers: Count
    hosts: Count = 1


class PipelineSpec(Strict):
    """Stages with replicas: ``stages: 3`` with ``replicas: 2``, or ``stages: [2, 3, 2]``."""

    generator: Literal["pipeline"]
    stages: Annotated[
        Annotated[Count, Tag("count")] | Annotated[list[Count], Tag("list")],
        Discriminator(lambda v: "list" if isinstance(v, list) else "count"),
    ]
    replicas: Count | None = None
    hosts: Count = 1

    def replica_counts(self) -> list[int]:
        if isinstance(self.stages, list):
            return list(self.stages)
        return [self.replicas or 1] * self.stages


class HostSpec(Strict):
    gpus: Annotated[int, Field(ge=0, le=1024)] = 0


class WorkerSpec(Strict):
    host: Name
    gpu: Annotated[int, Field(ge=0)] | None = None


class ExplicitSpec(Strict):
    """Hosts, workers placed on them, and worlds (rank = position in the member list)."""

    generator: Literal["explicit"]
    hosts: dict[Name, HostSpec]
    workers: dict[Name, WorkerSpec]
    worlds: dict[Name, list[Name]]


TopologySpec = Annotated[FanInSpec | PipelineSpec | ExplicitSpec, Field(discriminator="generator")]


# -- workload, expectations, the scenario -------------------------------------------------


class ServeModel(Strict):
    """A small deterministic model slice per stage: seeded weights, ``layers`` of
    ``width`` (without it a stage echoes a transformed payload)."""

    layers: Annotated[int, Field(ge=1, le=64)] = 2
    width: Annotated[int, Field(ge=4, le=8192)] = 128


#: The keys only the ``serve`` workload reads (anything else given them is an error).
SERVE_KEYS = (
    "rate_per_s",
    "arrivals",
    "cv",
    "request_bytes",
    "route",
    "retries",
    "timeout_ms",
    "model",
)


#: The serve workload's frontend: the worker where requests arrive and answers return.
FRONTEND = "leader"


def arrival_gaps(
    rate_per_s: float, arrivals: str, cv: float, rng: random.Random
) -> Iterator[float]:
    """Gaps between request arrivals, at ``rate_per_s`` on average: constant, Poisson, or
    bursty (a Gamma process with coefficient of variation ``cv``). The model and the real
    frontend draw from this one process."""
    mean, shape = 1.0 / rate_per_s, 1.0 / cv**2
    while True:
        if arrivals == "constant":
            yield mean
        elif arrivals == "poisson":
            yield rng.expovariate(rate_per_s)
        else:
            yield rng.gammavariate(shape, mean / shape)


def route_choice(options: Sequence[T], turn: int, route: str, load: Callable[[T], int]) -> T:
    """The serve workload's choice among a sender's next replicas (in name order, not
    empty): round robin from ``turn``; least outstanding by ``load``, its ties taken in
    that same round-robin order. The model and the real router choose by this one rule."""
    start = turn % len(options)
    turned = [*options[start:], *options[:start]]
    if route == "least_outstanding":
        return min(turned, key=load)
    return turned[0]


class Workload(Strict):
    """Per world: ``stream`` (ranks > 0 send to rank 0), ``request`` (round trips from
    rank 0), or ``allreduce`` (every rank, every interval); or ``serve``: requests arrive
    at the leader open-loop and go through the deployment (docs/scenarios.md)."""

    kind: Literal["stream", "request", "allreduce", "serve"] = "stream"
    tensor_bytes: Annotated[int, Field(ge=64, le=64 * 1024 * 1024)] = 4096
    interval_ms: Annotated[float, Field(ge=0, le=60_000, allow_inf_nan=False)] = 20.0
    rate_per_s: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)] = 40.0
    arrivals: Literal["constant", "poisson", "bursty"] = "poisson"
    cv: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 3.0
    request_bytes: Annotated[int, Field(ge=64, le=64 * 1024 * 1024)] = 4096
    route: Literal["round_robin", "least_outstanding"] = "round_robin"
    retries: Annotated[int, Field(ge=0, le=16)] = 2
    timeout_ms: Annotated[float, Field(gt=0, le=600_000, allow_inf_nan=False)] = 2000.0
    model: ServeModel | None = None

    @model_serializer(mode="wrap")
    def _keys_of_its_kind(self, dump: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A dump holds only the keys its kind reads (so it parses back, and a stream
        workload's digest is what it was before serving existed)."""
        data: dict[str, Any] = dump(self)
        drop: tuple[str, ...] = SERVE_KEYS
        if self.kind == "serve":
            drop = ("interval_ms", "tensor_bytes") + (("cv",) if self.arrivals != "bursty" else ())
        return {k: v for k, v in data.items() if k not in drop}

    @property
    def interval_s(self) -> float:
        return self.interval_ms / 1000

    def gaps(self, rng: random.Random) -> Iterator[float]:
        """The serve workload's gaps between arrivals (``arrival_gaps``)."""
        return arrival_gaps(self.rate_per_s, self.arrivals, self.cv, rng)

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000


class Slo(Strict):
    """Per phase, at least ``attainment`` of the requests answered within ``latency_ms``."""

    latency_ms: Annotated[float, Field(gt=0, le=600_000, allow_inf_nan=False)]
    attainment: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


if TYPE_CHECKING:  # the literals are built from the vocabulary: plain strings to mypy
    DetectableKind = str
    PropertyName = str
else:
    DetectableKind = Literal[DETECTABLE]
    PropertyName = Literal[tuple(p.value for p in Property)]


class Expect(Strict):
    """Bounds that override the runtime model's defaults, and expected violations."""

    progress_window_s: Duration | None = None
    detect_within_s: dict[DetectableKind, Duration] = Field(default_factory=dict)
    join_within_s: Duration | None = None
    recover_within_s: Duration | None = None
    slo: Slo | None = None  # the serve workload's service level
    violations: list[PropertyName] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _without_an_absent_slo(self, dump: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No ``slo`` key when none is asked (so a scenario's digest is what it was before
        serving existed, and old histories of it still match)."""
        data: dict[str, Any] = dump(self)
        if data.get("slo") is None:
            data.pop("slo", None)
        return data


class Scenario(Strict):
    """One scenario file."""

    mwsim: Literal[1]
    name: Name
    description: str = ""
    seed: int | None = None
    topology: TopologySpec
    runtime: Name = "multiworld"
    backend: Literal["gloo", "nccl"] = "gloo"
    workload: Workload = Workload()
    duration_s: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] = 10.0
    events: list[Event] = Field(default_factory=list)
    expect: Expect = Expect()

    _plan: Plan | None = PrivateAttr(default=None)
    _edges: dict[str, list[tuple[str, WorldLife]]] | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        """Equal files are equal scenarios (whether or not their plans were computed)."""
        return type(other) is type(self) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Scenario:
        """A copy with ``update`` applied; its plan is computed anew when asked for."""
        twin = super().model_copy(update=update, deep=deep)
        twin._plan = twin._edges = None
        return twin

    @property
    def plan(self) -> Plan:
        """The membership plan (computed once; ``PlanError`` if the timeline is impossible)."""
        if self._plan is None:
            problems = _spec_problems(self)
            if problems:
                raise PlanError(problems)
            timeline = self.membership()
            for index, event in self.ordered_events():
                timeline.apply(index, event)
            self._plan = timeline.plan()
        return self._plan

    def build_topology(self) -> topo.Topology:
        """A fresh Topology of the initial deployment."""
        return build_topology(self.topology)

    def ordered_events(self) -> list[tuple[int, AnyEvent]]:
        """``(index in file, event)`` in time order (file order breaks ties)."""
        return sorted(enumerate(self.events), key=lambda pair: (pair[1].at, pair[0]))

    @property
    def op_interval_s(self) -> float:
        """How long a world may go between two ops with nothing wrong: the workload's
        interval; for ``serve``, the gap between two requests routed to one replica that
        arrivals exceed once in a thousand (the runtime notices a dead peer at the next
        op, so this bounds detection by an op)."""
        workload = self.workload
        if workload.kind != "serve":
            return workload.interval_s
        spec = self.topology
        if isinstance(spec, PipelineSpec):
            replicas = max(spec.replica_counts())
        elif isinstance(spec, FanInSpec):
            replicas = spec.workers
        else:
            replicas = 1
        mean = replicas / workload.rate_per_s
        if workload.arrivals == "constant" and workload.route == "round_robin":
            return mean
        spread = workload.cv**2 if workload.arrivals == "bursty" else 1.0
        return mean * math.log(1000) * max(1.0, spread)

    def only_receives(self, rank: int) -> bool:
        """Does rank ``rank`` of a world only wait for requests (the serve workload: a
        fan-in's replica, a pipeline world's receiving end)? It sees a resetting cut only
        as the watchdog does: no traffic comes to be reset."""
        if self.workload.kind != "serve":
            return False
        return rank == 0 if isinstance(self.topology, PipelineSpec) else rank != 0

    def request_edges(self) -> dict[str, list[tuple[str, WorldLife]]]:
        """The serve workload's routing rule: per sender, each (receiver, world life) a
        request may cross to, in receiver order. A pipeline's worlds carry from rank 1 to
        rank 0; a fan-in's from the frontend to a replica and back. Every life of the
        plan (callers keep those alive at their time). Computed once; not to be changed."""
        if self._edges is not None:
            return self._edges
        edges: dict[str, list[tuple[str, WorldLife]]] = {}
        pipeline = isinstance(self.topology, PipelineSpec)
        for life in self.plan.worlds:
            members = life.members
            if pipeline:
                edges.setdefault(members[1], []).append((members[0], life))
            elif FRONTEND in members:
                replica = next(m for m in members if m != FRONTEND)
                edges.setdefault(FRONTEND, []).append((replica, life))
                edges.setdefault(replica, []).append((FRONTEND, life))
        for options in edges.values():
            options.sort(key=lambda e: e[0])
        self._edges = edges
        return edges

    def digest(self) -> str:
        """What a run of it depends on, as a short hash (its ``run`` record keeps it, so a
        history judged against an edited scenario is refused): everything but the name's
        free text and the runtime and backend (recorded beside it, and overridable)."""
        data = self.model_dump(
            mode="json", by_alias=True, exclude={"description", "runtime", "backend"}
        )
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def membership(self) -> Membership:
        """The membership state at the start, ready to apply events to."""
        return Membership(
            self.build_topology(),
            duration_s=self.duration_s,
            backend=self.backend,
            upcoming=self.events,
        )

    def timeline(self) -> Membership:
        """The old name of ``membership`` (kept for users' code)."""
        return self.membership()


def build_topology(spec: FanInSpec | PipelineSpec | ExplicitSpec) -> topo.Topology:
    if isinstance(spec, FanInSpec):
        return topo.fan_in(spec.workers, spec.hosts)
    if isinstance(spec, PipelineSpec):
        return topo.pipeline(spec.replica_counts(), spec.hosts)
    return topo.explicit(
        {name: host.gpus for name, host in spec.hosts.items()},
        {name: (w.host, w.gpu) for name, w in spec.workers.items()},
        spec.worlds,
    )


def _explicit_problems(spec: ExplicitSpec, backend: str) -> list[tuple[Loc, str]]:
    base: Loc = ("topology",)
    problems: list[tuple[Loc, str]] = []
    if not spec.hosts:
        problems.append(((*base, "hosts"), "needs at least one host"))
    for name, worker in spec.workers.items():
        loc = (*base, "workers", name)
        host = spec.hosts.get(worker.host)
        if host is None:
            known = ", ".join(spec.hosts) or "none"
            problems.append(
                ((*loc, "host"), f"worker '{name}': no host named '{worker.host}' (hosts: {known})")
            )
            continue
        if worker.gpu is not None and worker.gpu >= host.gpus:
            problems.append(
                (
                    (*loc, "gpu"),
                    f"worker '{name}': host '{worker.host}' has {host.gpus} GPU(s), "
                    f"no GPU {worker.gpu}",
                )
            )
        if backend == "nccl" and host.gpus == 0:
            problems.append(
                (
                    (*loc, "host"),
                    f"worker '{name}': backend nccl needs a GPU per worker, "
                    f"but host '{worker.host}' has gpus: 0",
                )
            )
    for name, members in spec.worlds.items():
        loc = (*base, "worlds", name)
        problems += members_problems(name, members, loc, lambda m: m in spec.workers)
    return problems


def _spec_problems(scenario: Scenario) -> list[tuple[Loc, str]]:
    """What is wrong with the topology and workload sections themselves, before any event
    is applied."""
    spec = scenario.topology
    problems = _workload_problems(scenario)
    if isinstance(spec, ExplicitSpec):
        return problems + _explicit_problems(spec, scenario.backend)
    if isinstance(spec, PipelineSpec) and isinstance(spec.stages, list) and spec.replicas:
        message = "replicas goes with a stage count (stages: 3); a list gives replicas per stage"
        problems.append((("topology", "replicas"), message))
    return problems


def _workload_problems(scenario: Scenario) -> list[tuple[Loc, str]]:
    """Keys of one workload kind given to another, and serving where it cannot be."""
    workload, given = scenario.workload, scenario.workload.model_fields_set
    problems: list[tuple[Loc, str]] = []
    if workload.kind != "serve":
        for key in SERVE_KEYS:
            if key in given:
                message = f"{key} is for kind: serve (this workload is {workload.kind})"
                problems.append((("workload", key), message))
        if scenario.expect.slo is not None:
            message = "slo judges the requests of kind: serve (this workload has none)"
            problems.append((("expect", "slo"), message))
        return problems
    if isinstance(scenario.topology, ExplicitSpec):
        message = "serve needs a fan_in or pipeline topology (a frontend and replicas)"
        problems.append((("topology", "generator"), message))
    if "cv" in given and workload.arrivals != "bursty":
        message = f"cv shapes bursty arrivals (arrivals here: {workload.arrivals})"
        problems.append((("workload", "cv"), message))
    for key in ("interval_ms", "tensor_bytes"):
        if key in given:
            message = (
                f"{key} is not read by kind: serve (its pace is rate_per_s, its size request_bytes)"
            )
            problems.append((("workload", key), message))
    return problems


def plan_problems(scenario: Scenario) -> list[tuple[Loc, str]]:
    """Every reason the scenario's topology or timeline is impossible, each with its path."""
    try:
        scenario.plan  # noqa: B018 (computing it is the check)
    except PlanError as exc:
        return exc.problems
    return []


# -- errors -------------------------------------------------------------------------------

_MODELS: tuple[type[BaseModel], ...] = (
    Scenario,
    FanInSpec,
    PipelineSpec,
    HostSpec,
    WorkerSpec,
    ExplicitSpec,
    Workload,
    Expect,
    *SCHEMAS.values(),
)
_ALL_KEYS = sorted(
    {field.alias or name for model in _MODELS for name, field in model.model_fields.items()}
)
_TYPE_WORDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_ENUM_REPR = re.compile(r"<\w+\.\w+: ('[^']*')>")  # how pydantic shows an enum tag
_BOUND_WORDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def dotted(loc: Sequence[Any]) -> str:
    """``("events", 2, "target")`` -> ``events[2].target``."""
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _real_loc(source: Source, loc: Sequence[Any], missing: bool) -> tuple[Any, ...]:
    """Drop the union tags pydantic inserts, keeping keys and indexes (and a missing key)."""
    kept: tuple[Any, ...] = ()
    for i, item in enumerate(loc):
        if (*kept, item) in source.lines or (missing and i == len(loc) - 1):
            kept = (*kept, item)
    return kept


def _explain(error: ErrorDetails, where: str) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx", {})
    prefix = f"{where}: " if where else ""
    if kind == "missing":
        return f"missing required key '{where}'"
    if kind == "extra_forbidden":
        key = where.rsplit(".", 1)[-1].split("[")[0] if where else ""
        close = difflib.get_close_matches(str(key), _ALL_KEYS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key '{key}'{hint}"
    if kind == "union_tag_invalid":
        expected = _ENUM_REPR.sub(r"\1", str(ctx.get("expected_tags")))
        return f"{where}: unknown value {_shown(ctx.get('tag'))}; expected one of {expected}"
    if kind == "union_tag_not_found":
        tag = ctx.get("discriminator", "").strip("'")
        return f"{prefix}missing required key '{tag}'"
    if kind in _TYPE_WORDS:
        hint = ""
        if kind == "float_type" and isinstance(value, str):
            try:
                float(value)
                hint = " (YAML reads numbers like 1e3 as text: write 1.0e+3)"
            except ValueError:
                pass
        return f"{prefix}must be {_TYPE_WORDS[kind]}, got {_shown(value)}{hint}"
    if kind in _BOUND_WORDS:
        bound = next(iter(ctx.values()), "?")
        shown = f"{bound:g}" if isinstance(bound, (int, float)) else bound
        return f"{prefix}must be {_BOUND_WORDS[kind]} {shown}, got {_shown(value)}"
    if kind == "finite_number":
        return f"{prefix}must be a finite number, got {_shown(value)}"
    if kind == "literal_error":
        if where == "mwsim":
            return (
                f"mwsim: unsupported format version {_shown(value)} "
                f"(this mwsim reads version {FORMAT_VERSION})"
            )
        return f"{prefix}must be {ctx.get('expected')}, got {_shown(value)}"
    if kind == "value_error":
        return f"{prefix}{str(error['msg']).removeprefix('Value error, ')}"
    return f"{prefix}{error['msg']}, got {_shown(value)}"


def _schema_problems(source: Source, exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = _real_loc(source, error["loc"], missing=error["type"] == "missing")
        if error["type"] == "union_tag_invalid":  # point at the offending tag's value
            loc = (*loc, str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
        problems.append(source.problem(loc, _explain(error, dotted(loc))))
    return problems


# -- load / dump --------------------------------------------------------------------------


def parse_scenario(
    raw: bytes | str, path: str = "<scenario>", overrides: Mapping[str, str] | None = None
) -> Scenario:
    """Parse and fully validate a scenario; raise ``ProblemError`` listing every problem.
    ``overrides`` (``runtime``, ``backend`` from the command line) replace the file's
    keys; a problem they cause names the file's line and the option."""
    source = load_source(raw, path)
    if not isinstance(source.data, dict):
        kind = type(source.data).__name__
        raise ProblemError(
            [Problem(path, 1, f"expected a scenario (a YAML mapping) at the top level, got {kind}")]
        )
    update = {k: v for k, v in (overrides or {}).items() if v}
    said = " ".join(f"--{k} {v}" for k, v in update.items())
    why = f" (with {said})" if said else ""
    try:
        scenario = Scenario.model_validate({**source.data, **update})
    except ValidationError as exc:
        problems = _schema_problems(source, exc)
        problems += [
            source.problem(loc, f"{dotted(loc)}: {message}")
            for loc, message in _timeline_problems_beside(source.data, update, exc)
        ]
        raise ProblemError([Problem(p.path, p.line, p.message + why) for p in problems]) from None
    problems = [
        source.problem(loc, f"{dotted(loc)}: {message}{why}")
        for loc, message in plan_problems(scenario)
    ]
    if problems:
        raise ProblemError(problems)
    return scenario


def _timeline_problems_beside(
    data: dict[str, Any], update: Mapping[str, str], exc: ValidationError
) -> list[tuple[Loc, str]]:
    """The timeline problems of a file whose schema problems all lie inside events, so that
    one pass reports both: the valid events are planned, and the problems of those before
    the first broken event are kept (a later one may depend on the broken one: a crash of
    the worker a malformed join adds). None when a problem lies elsewhere."""
    events = data.get("events")
    if not isinstance(events, list):
        return []
    bad: set[int] = set()
    for error in exc.errors():
        loc = error["loc"]
        if len(loc) < 2 or loc[0] != "events":
            return []
        if not isinstance(loc[1], int) or not 0 <= loc[1] < len(events):
            return []
        bad.add(loc[1])

    def at(event: Any) -> float | None:
        value = event.get("at") if isinstance(event, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    times = [at(events[i]) for i in bad]
    if any(t is None for t in times):
        return []
    cutoff = min(t for t in times if t is not None)
    kept = [i for i in range(len(events)) if i not in bad]
    try:
        scenario = Scenario.model_validate({**data, **update, "events": [events[i] for i in kept]})
    except ValidationError:
        return []
    found = []
    for loc, message in plan_problems(scenario):
        if len(loc) < 2 or loc[0] != "events" or not isinstance(loc[1], int):
            continue  # about the whole timeline: the broken events may change it
        index = kept[loc[1]]
        when = at(events[index])
        if when is not None and when < cutoff:
            found.append((("events", index, *loc[2:]), message))
    return found


def load_scenario(path: str | Path, overrides: Mapping[str, str] | None = None) -> Scenario:
    """Read, parse and validate a scenario file (with the command line's ``overrides``)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ProblemError([Problem(str(path), 1, f"cannot read: {exc.strerror}")]) from None
    return parse_scenario(raw, str(path), overrides)


def duplicate_names(loaded: Sequence[tuple[str | Path, Scenario]]) -> list[Problem]:
    """Scenarios of one library must have distinct names (their artefacts are stored
    under the name): a problem at each later file's ``name`` line."""
    first: dict[str, str] = {}
    problems: list[Problem] = []
    for path, scenario in loaded:
        if scenario.name not in first:
            first[scenario.name] = str(path)
            continue
        try:
            line = load_source(Path(path).read_bytes(), str(path)).line_of(("name",))
        except (OSError, ProblemError):
            line = 1
        message = f"name: '{scenario.name}' is already the name of {first[scenario.name]}"
        problems.append(Problem(str(path), line, message))
    return problems


def parse_inline(yaml_text: str, name: str = "inline") -> Scenario:
    """Parse a scenario written inline (dedented); ``mwsim: 1`` and ``name`` may be left out."""
    text = textwrap.dedent(yaml_text)
    if "mwsim:" not in text:
        text = "mwsim: 1\n" + text
    if "\nname:" not in "\n" + text:
        text = f"name: {name}\n" + text
    return parse_scenario(text, f"<{name}>")


class _Dumper(yaml.SafeDumper):
    pass


class _Flow(dict[str, Any]):
    """A mapping written on one line (events, world member maps)."""


_Dumper.add_representer(
    _Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)
_Dumper.add_representer(
    list,
    lambda d, data: d.represent_sequence(
        "tag:yaml.org,2002:seq",
        data,
        flow_style=all(not isinstance(x, dict) for x in data),
    ),
)


def dump_scenario(scenario: Scenario) -> str:
    """YAML text that parses back to an equal scenario."""
    data = scenario.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    data = {"mwsim": FORMAT_VERSION, **data}
    if "events" in data:
        data["events"] = [_Flow(event) for event in data["events"]]
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
