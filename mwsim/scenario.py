"""The scenario file (format version 1): schema, load with located errors, dump.

A scenario is the unit of replay: a topology, a workload, a timeline of faults and
membership changes, and what to expect. Loading finds every problem before anything
runs and reports each as ``path:line: message``; the schema is checked by pydantic and
the timeline by :mod:`mwsim.membership`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
)

from mwsim import topology as topo
from mwsim.internal.yamlsource import Source, load_source
from mwsim.problems import Problem, ProblemError

FORMAT_VERSION = 1
PROPERTIES = (
    "progress",
    "detection",
    "no_false_alarm",
    "integrity",
    "scale_out",
    "hygiene",
    "conformance",
)
NAME_CHARS = "letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64"


def _check_name(value: str) -> str:
    ok = (
        0 < len(value) <= 64
        and value[0].isascii()
        and value[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "_.-") for c in value)
    )
    if not ok:
        raise ValueError(f"{value!r} is not a valid name ({NAME_CHARS})")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Duration = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=100_000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- topology -----------------------------------------------------------------------------


class FanInSpec(_Model):
    """A ``leader`` plus ``w1..wN``, one world per worker, optionally over K hosts."""

    generator: Literal["fan_in"]
    workers: Count
    hosts: Count = 1


class PipelineSpec(_Model):
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


class HostSpec(_Model):
    gpus: Annotated[int, Field(ge=0, le=1024)] = 0


class WorkerSpec(_Model):
    host: Name
    gpu: Annotated[int, Field(ge=0)] | None = None


class ExplicitSpec(_Model):
    """Hosts, workers placed on them, and worlds (rank = position in the member list)."""

    generator: Literal["explicit"]
    hosts: dict[Name, HostSpec]
    workers: dict[Name, WorkerSpec]
    worlds: dict[Name, list[Name]]


TopologySpec = Annotated[FanInSpec | PipelineSpec | ExplicitSpec, Field(discriminator="generator")]


# -- workload, events, expectations -------------------------------------------------------


class Workload(_Model):
    """Per world: ``stream`` (ranks > 0 send to rank 0), ``request`` (round trips from
    rank 0), or ``allreduce`` (every rank, every interval)."""

    kind: Literal["stream", "request", "allreduce"] = "stream"
    tensor_bytes: Annotated[int, Field(ge=64, le=64 * 1024 * 1024)] = 4096
    interval_ms: Annotated[float, Field(ge=0, le=60_000, allow_inf_nan=False)] = 20.0


class _Event(_Model):
    at: Seconds


class Crash(_Event):
    """SIGKILL the worker's process."""

    do: Literal["crash"]
    target: Name


class Hang(_Event):
    """SIGSTOP the worker's process; SIGCONT after ``for_s`` (omitted: never)."""

    do: Literal["hang"]
    target: Name
    for_s: Duration | None = None


class Leave(_Event):
    """The worker stops its work and exits gracefully."""

    do: Literal["leave"]
    target: Name


class CrashHost(_Event):
    """Crash every worker on the host."""

    do: Literal["crash_host"]
    target: Name


class Slow(_Event):
    """Delay each of the worker's ops by ``delay_ms`` for ``for_s`` (omitted: to the end)."""

    do: Literal["slow"]
    target: Name
    delay_ms: Annotated[float, Field(gt=0, le=60_000, allow_inf_nan=False)]
    for_s: Duration | None = None


class Join(_Event):
    """A new worker process starts and forms ``worlds`` with live workers."""

    do: Literal["join"]
    worker: Name
    host: Name | None = None
    gpu: Annotated[int, Field(ge=0)] | None = None
    worlds: dict[Name, list[Name]] = Field(default_factory=dict)


class AddWorld(_Event):
    """Live workers form a new world (rank = position in ``members``)."""

    do: Literal["add_world"]
    world: Name
    members: list[Name]


class RemoveWorld(_Event):
    """Every member removes the world gracefully."""

    do: Literal["remove_world"]
    world: Name


Event = Annotated[
    Crash | Hang | Leave | CrashHost | Slow | Join | AddWorld | RemoveWorld,
    Field(discriminator="do"),
]
FAULT_EVENTS = ("crash", "hang", "leave", "crash_host", "slow")
SCALE_EVENTS = ("join", "add_world", "remove_world")


class Expect(_Model):
    """Bounds that override the runtime model's defaults, and expected violations."""

    progress_window_s: Duration | None = None
    detect_within_s: dict[Literal["crash", "hang", "leave", "crash_host"], Duration] = Field(
        default_factory=dict
    )
    join_within_s: Duration | None = None
    violations: list[Literal[PROPERTIES]] = Field(default_factory=list)  # type: ignore[valid-type]


class Scenario(_Model):
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

    def build_topology(self) -> topo.Topology:
        """A fresh Topology of the initial deployment."""
        return build_topology(self.topology)

    def ordered_events(self) -> list[tuple[int, Any]]:
        """``(index in file, event)`` in time order (file order breaks ties)."""
        return sorted(enumerate(self.events), key=lambda pair: (pair[1].at, pair[0]))


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


# -- errors -------------------------------------------------------------------------------

_ALL_KEYS = sorted(
    {
        name
        for model in (
            Scenario,
            FanInSpec,
            PipelineSpec,
            HostSpec,
            WorkerSpec,
            ExplicitSpec,
            Workload,
            Crash,
            Hang,
            Leave,
            CrashHost,
            Slow,
            Join,
            AddWorld,
            RemoveWorld,
            Expect,
        )
        for name in model.model_fields
    }
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


def _explain(error: dict[str, Any], where: str) -> str:
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
        tag = ctx.get("discriminator", "").strip("'")
        return (
            f"{where}.{tag}: unknown value {_shown(ctx.get('tag'))}; "
            f"expected one of {ctx.get('expected_tags')}"
        )
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
        problems.append(source.problem(loc, _explain(error, dotted(loc))))
    return problems


# -- load / dump --------------------------------------------------------------------------


def parse_scenario(raw: bytes | str, path: str = "<scenario>") -> Scenario:
    """Parse and fully validate a scenario; raise ``ProblemError`` listing every problem."""
    from mwsim.membership import plan_problems  # the timeline check reads the model

    source = load_source(raw, path)
    if not isinstance(source.data, dict):
        kind = type(source.data).__name__
        raise ProblemError(
            [Problem(path, 1, f"expected a scenario (a YAML mapping) at the top level, got {kind}")]
        )
    try:
        scenario = Scenario.model_validate(source.data)
    except ValidationError as exc:
        raise ProblemError(_schema_problems(source, exc)) from None
    problems = [
        source.problem(loc, f"{dotted(loc)}: {message}") for loc, message in plan_problems(scenario)
    ]
    if problems:
        raise ProblemError(problems)
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read, parse and validate a scenario file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ProblemError([Problem(str(path), 1, f"cannot read: {exc.strerror}")]) from None
    return parse_scenario(raw, str(path))


def check_file(path: str | Path) -> list[Problem]:
    """Every problem of one scenario file (empty when it is valid)."""
    try:
        load_scenario(path)
    except ProblemError as exc:
        return list(exc.problems)
    return []


class _Dumper(yaml.SafeDumper):
    pass


class _Flow(dict):
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
    data = scenario.model_dump(mode="json", exclude_defaults=True)
    data = {"mwsim": FORMAT_VERSION, **data}
    if "events" in data:
        data["events"] = [_Flow(event) for event in data["events"]]
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
