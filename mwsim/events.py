"""The one vocabulary of scenario events: every kind, what it does, and how it is confirmed.

Every other module asks this one what a kind means (does it break worlds, end its
workers, last ``for_s``, what does it target, how does the replay confirm it); none
spells out lists of kind names. Adding a kind means: a ``Kind`` member, its ``KindInfo``,
its schema class below, its rule in the membership timeline, its model in the simulator,
its injector in the replay, and its proposal in ``strategies``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, model_validator

from mwsim.internal.fields import Duration, GpuIndex, Name, Seconds, Strict


class Kind(StrEnum):
    """Every kind of scenario event (the ``do:`` key)."""

    CRASH = "crash"
    HANG = "hang"
    LEAVE = "leave"
    SLOW = "slow"
    CRASH_HOST = "crash_host"
    JOIN = "join"
    ADD_WORLD = "add_world"
    REMOVE_WORLD = "remove_world"
    PARTITION = "partition"
    DEGRADE = "degrade"
    POWER_OFF = "power_off"
    GPU_HANG = "gpu_hang"
    GPU_ERROR = "gpu_error"
    GPU_SLOW = "gpu_slow"

    @property
    def info(self) -> KindInfo:
        return INFO[self]


class Target(StrEnum):
    """What an event's subject names."""

    WORKER = "worker"  # ``target``: a running worker
    HOST = "host"  # ``target``: a host, acting on every worker placed on it
    LINKS = "links"  # ``groups`` or ``from``/``to``: the links between sets of hosts
    NEW_WORKER = "new_worker"  # ``worker``: the worker that starts
    NEW_WORLD = "new_world"  # ``world``: the world that forms
    WORLD = "world"  # ``world``: a live world


class Confirm(StrEnum):
    """How the replay confirms that an event really happened (from the kernel or the agent)."""

    KILLED = "killed"  # the reaper saw every target killed by SIGKILL
    STOPPED = "stopped"  # /proc shows the process stopped (and, at its end, running again)
    EXITED = "exited"  # the process exited with status 0
    ACKED = "acked"  # the agent acknowledged the command (and, at its end, the reset)
    RULES = "rules"  # the kernel's network state (nft, tc, links) reads back as asked
    POWERED_OFF = "powered_off"  # the host's link reads back down, then its processes died
    OUTCOME = "outcome"  # nothing to confirm: its outcome (joined, left) is what is judged


@dataclass(frozen=True)
class KindInfo:
    """The facts the rest of mwsim asks about a kind (what is not said is false)."""

    target: Target
    confirm: Confirm
    fault: bool = False  # recorded as a ``fault`` (else a ``scale`` event)
    breaks: bool = False  # breaks the worlds it hits (a partition: the worlds it cuts)
    ends: bool = False  # ends the worker processes it acts on
    silent: bool = False  # peers can notice only through the watchdog (by default: see Event)
    lasting: bool = False  # may last ``for_s``; its end is recorded as ``resumed``
    network: bool = False  # acts on the network: needs emulated hosts on a real run
    gpu: bool = False  # acts on the worker's GPU: needs backend nccl (a GPU per worker)
    #: who must notice the worlds it breaks, by MultiWorld's design: the other members
    #: (``peers``), the faulty member itself (``self``: its own ops fail), or nobody
    #: (``none``: its CPU threads keep heartbeating; ``expect.detect_within_s`` may still
    #: demand a report)
    noticed: Literal["peers", "self", "none"] = "peers"
    confirm_within_s: float = 2.0  # the replay's deadline for the confirmation
    exit_code: int | None = None  # how a worker it ends exits (-9: killed by SIGKILL)
    colour: str = "black"  # how reports draw it


#: The field of a ``fault`` or ``scale`` record that names the event's subject.
SUBJECT_FIELD: Mapping[Target, str] = {
    Target.WORKER: "target",
    Target.HOST: "target",
    Target.LINKS: "target",
    Target.NEW_WORKER: "worker",
    Target.NEW_WORLD: "world",
    Target.WORLD: "world",
}


def subject_of(record: Mapping[str, Any]) -> str | None:
    """The subject a ``fault`` or ``scale`` record names (None: not a known kind)."""
    try:
        kind = Kind(str(record.get("do")))
    except ValueError:
        return None
    return record.get(SUBJECT_FIELD[kind.info.target])


INFO: Mapping[Kind, KindInfo] = {
    Kind.CRASH: KindInfo(
        Target.WORKER,
        Confirm.KILLED,
        fault=True,
        breaks=True,
        ends=True,
        exit_code=-9,
        colour="#d62728",
    ),
    Kind.HANG: KindInfo(
        Target.WORKER,
        Confirm.STOPPED,
        fault=True,
        breaks=True,
        silent=True,
        lasting=True,
        colour="#ff7f0e",
    ),
    Kind.LEAVE: KindInfo(
        Target.WORKER,
        Confirm.EXITED,
        fault=True,
        breaks=True,
        ends=True,
        exit_code=0,
        confirm_within_s=5.0,
        colour="#9467bd",
    ),
    Kind.SLOW: KindInfo(Target.WORKER, Confirm.ACKED, fault=True, lasting=True, colour="#e6c229"),
    Kind.CRASH_HOST: KindInfo(
        Target.HOST,
        Confirm.KILLED,
        fault=True,
        breaks=True,
        ends=True,
        exit_code=-9,
        colour="#8c1515",
    ),
    Kind.JOIN: KindInfo(Target.NEW_WORKER, Confirm.OUTCOME, colour="#2ca02c"),
    Kind.ADD_WORLD: KindInfo(Target.NEW_WORLD, Confirm.OUTCOME, colour="#17becf"),
    Kind.REMOVE_WORLD: KindInfo(Target.WORLD, Confirm.OUTCOME, colour="#7f7f7f"),
    Kind.PARTITION: KindInfo(
        Target.LINKS,
        Confirm.RULES,
        confirm_within_s=5.0,
        fault=True,
        breaks=True,
        silent=True,
        lasting=True,
        network=True,
        colour="#1f77b4",
    ),
    Kind.DEGRADE: KindInfo(  # a delay starts a daemon: about a second on a busy machine
        Target.HOST,
        Confirm.RULES,
        confirm_within_s=10.0,
        fault=True,
        lasting=True,
        network=True,
        colour="#bcbd22",
    ),
    Kind.POWER_OFF: KindInfo(
        Target.HOST,
        Confirm.POWERED_OFF,
        confirm_within_s=5.0,
        fault=True,
        breaks=True,
        ends=True,
        silent=True,
        network=True,
        exit_code=-9,
        colour="#4b0082",
    ),
    Kind.GPU_HANG: KindInfo(  # a kernel that never returns: the process and its threads live
        Target.WORKER,
        Confirm.ACKED,
        confirm_within_s=5.0,
        fault=True,
        breaks=True,
        silent=True,
        lasting=True,
        gpu=True,
        noticed="none",
        colour="#ff9896",
    ),
    Kind.GPU_ERROR: KindInfo(  # a sticky CUDA error: the device is unusable, the process lives
        Target.WORKER,
        Confirm.ACKED,
        confirm_within_s=5.0,
        fault=True,
        breaks=True,
        silent=True,
        gpu=True,
        noticed="self",
        colour="#c5b0d5",
    ),
    Kind.GPU_SLOW: KindInfo(
        Target.WORKER,
        Confirm.ACKED,
        confirm_within_s=5.0,
        fault=True,
        lasting=True,
        gpu=True,
        colour="#dbdb8d",
    ),
}

FAULTS = frozenset(k for k in Kind if k.info.fault)
NETWORK = frozenset(k for k in Kind if k.info.network)
GPU = frozenset(k for k in Kind if k.info.gpu)
BREAKING = frozenset(k for k in Kind if k.info.breaks)
ENDING = frozenset(k for k in Kind if k.info.ends)
#: Kinds ``expect.detect_within_s`` may name (those that break worlds), as YAML spells them.
DETECTABLE = tuple(k.value for k in Kind if k.info.breaks)


# -- the schema of each kind (scenario format version 1) ----------------------------------


class EventBase(Strict):
    """What every event has: when (seconds after the workload starts) and what."""

    at: Seconds
    do: Kind

    @property
    def kind(self) -> Kind:
        return Kind(self.do)

    @property
    def info(self) -> KindInfo:
        return INFO[self.kind]

    @property
    def subject(self) -> str:
        """The name the event acts on: its target, the joining worker, or the world."""
        raise NotImplementedError

    def lasts(self) -> float | None:
        """``for_s`` of a lasting event (None: to the end of the run, or not lasting)."""
        return None

    @property
    def silent(self) -> bool:
        """Can peers notice it only through the watchdog (no reset, no failing op)?"""
        return self.info.silent

    def silent_to(self, host: str) -> bool:
        """Can a peer on ``host`` notice it only through the watchdog?"""
        return self.silent

    def record(self) -> dict[str, Any]:
        """The fields of its ``fault`` or ``scale`` history record."""
        return {"do": self.kind.value, "target": self.subject}


class _Targeted(EventBase):
    target: Name

    @property
    def subject(self) -> str:
        return self.target


class Crash(_Targeted):
    """SIGKILL the worker's process."""

    do: Literal[Kind.CRASH]


class _Stopping(_Targeted):
    """Stops the target's work for ``for_s`` (omitted: for good)."""

    for_s: Duration | None = None

    def lasts(self) -> float | None:
        return self.for_s

    def record(self) -> dict[str, Any]:
        return {**super().record(), "for_s": self.for_s}


class Hang(_Stopping):
    """SIGSTOP the worker's process; SIGCONT after ``for_s`` (omitted: never)."""

    do: Literal[Kind.HANG]


class Leave(_Targeted):
    """The worker stops its work and exits gracefully."""

    do: Literal[Kind.LEAVE]


class CrashHost(_Targeted):
    """Crash every worker on the host."""

    do: Literal[Kind.CRASH_HOST]


class Slow(_Targeted):
    """Delay each of the worker's ops by ``delay_ms`` for ``for_s`` (omitted: to the end)."""

    do: Literal[Kind.SLOW]
    delay_ms: Annotated[float, Field(gt=0, le=60_000, allow_inf_nan=False)]
    for_s: Duration | None = None

    def lasts(self) -> float | None:
        return self.for_s

    def record(self) -> dict[str, Any]:
        return {**super().record(), "delay_ms": self.delay_ms, "for_s": self.for_s}


class Join(EventBase):
    """A new worker process starts and forms ``worlds`` with live workers."""

    do: Literal[Kind.JOIN]
    worker: Name
    host: Name | None = None
    gpu: GpuIndex | None = None
    worlds: dict[Name, list[Name]] = Field(default_factory=dict)

    @property
    def subject(self) -> str:
        return self.worker

    def record(self) -> dict[str, Any]:
        return {"do": self.kind.value, "worker": self.worker, "worlds": sorted(self.worlds)}


class AddWorld(EventBase):
    """Live workers form a new world (rank = position in ``members``)."""

    do: Literal[Kind.ADD_WORLD]
    world: Name
    members: list[Name]

    @property
    def subject(self) -> str:
        return self.world

    def record(self) -> dict[str, Any]:
        return {"do": self.kind.value, "world": self.world, "members": list(self.members)}


class RemoveWorld(EventBase):
    """Every member removes the world gracefully."""

    do: Literal[Kind.REMOVE_WORLD]
    world: Name

    @property
    def subject(self) -> str:
        return self.world

    def record(self) -> dict[str, Any]:
        return {"do": self.kind.value, "world": self.world}


class Partition(EventBase):
    """Cut the links between hosts: each of ``groups`` from every other, or one way
    ``from`` -> ``to``. ``mode: drop`` (default) is silent, ``reset`` resets connections
    and refuses connects. Healed after ``for_s`` (omitted: never). Hosts not named keep
    all their links."""

    do: Literal[Kind.PARTITION]
    groups: list[list[Name]] | None = None
    from_: list[Name] | None = Field(default=None, alias="from")
    to: list[Name] | None = None
    mode: Literal["drop", "reset"] = "drop"
    for_s: Duration | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Partition:
        if (self.groups is None) == (self.from_ is None and self.to is None):
            raise ValueError("a partition needs either groups, or from and to")
        if self.groups is None and (self.from_ is None or self.to is None):
            raise ValueError("a one-way partition needs both from and to")
        return self

    @property
    def subject(self) -> str:
        """``h0 | h1,h2`` for groups, ``h1 -> h0`` one way (names have no spaces)."""
        sides = [",".join(side) for side in self.sides()]
        return f"{sides[0]} -> {sides[1]}" if self.one_way else " | ".join(sides)

    def sides(self) -> list[list[str]]:
        """The groups, or ``[from, to]``."""
        if self.groups is not None:
            return [list(g) for g in self.groups]
        return [list(self.from_ or []), list(self.to or [])]

    @property
    def one_way(self) -> bool:
        return self.groups is None

    @property
    def silent(self) -> bool:
        return self.mode == "drop"

    def silent_to(self, host: str) -> bool:
        """One way with resets, the ``to`` side gets none (they go back to the senders on
        the ``from`` side), so it sees the cut only through the watchdog."""
        return self.silent or (self.one_way and host in (self.to or []))

    def lasts(self) -> float | None:
        return self.for_s

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"do": self.kind.value, "target": self.subject}
        if self.one_way:
            out.update({"from": self.from_, "to": self.to})
        else:
            out["groups"] = self.groups
        return {**out, "mode": self.mode, "for_s": self.for_s}


Knob = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Degrade(_Targeted):
    """Degrade the host's link, both directions, for ``for_s`` (omitted: to the end):
    any non-empty subset of ``delay_ms`` (a round trip through the link takes that much
    longer, ``± jitter_ms``), ``loss_pct`` (of the packets through it, either way) and
    ``rate_mbit`` (each way)."""

    do: Literal[Kind.DEGRADE]
    delay_ms: Annotated[Knob, Field(le=60_000)] | None = None
    jitter_ms: Annotated[Knob, Field(le=60_000)] | None = None
    loss_pct: Annotated[Knob, Field(le=100)] | None = None
    rate_mbit: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)] | None = None
    for_s: Duration | None = None

    @model_validator(mode="after")
    def _some_knob(self) -> Degrade:
        knobs = (self.delay_ms, self.jitter_ms, self.loss_pct, self.rate_mbit)
        if all(v is None for v in knobs):
            raise ValueError("needs at least one of delay_ms, jitter_ms, loss_pct, rate_mbit")
        return self

    def lasts(self) -> float | None:
        return self.for_s

    def record(self) -> dict[str, Any]:
        knobs = {
            k: v
            for k, v in (
                ("delay_ms", self.delay_ms),
                ("jitter_ms", self.jitter_ms),
                ("loss_pct", self.loss_pct),
                ("rate_mbit", self.rate_mbit),
            )
            if v is not None
        }
        return {**super().record(), **knobs, "for_s": self.for_s}


class PowerOff(_Targeted):
    """The host vanishes silently: its link drops everything, then its processes die."""

    do: Literal[Kind.POWER_OFF]


class GpuHang(_Stopping):
    """The worker's GPU stops completing work (a kernel that never returns) for ``for_s``
    (omitted: for good); its process and its threads keep running."""

    do: Literal[Kind.GPU_HANG]


class GpuError(_Targeted):
    """A sticky CUDA error in the worker: its device is unusable from then on, its process
    alive. Peers hear nothing; its own next op fails."""

    do: Literal[Kind.GPU_ERROR]

    def silent_to(self, host: str) -> bool:
        """The one who must notice is the faulty member itself: its own ops fail."""
        return False


class GpuSlow(_Targeted):
    """The worker's GPU work takes ``factor`` times longer for ``for_s`` (omitted: to the
    end)."""

    do: Literal[Kind.GPU_SLOW]
    factor: Annotated[float, Field(gt=1, le=1000, allow_inf_nan=False)]
    for_s: Duration | None = None

    def lasts(self) -> float | None:
        return self.for_s

    def record(self) -> dict[str, Any]:
        return {**super().record(), "factor": self.factor, "for_s": self.for_s}


AnyEvent = (
    Crash
    | Hang
    | Leave
    | CrashHost
    | Slow
    | Join
    | AddWorld
    | RemoveWorld
    | Partition
    | Degrade
    | PowerOff
    | GpuHang
    | GpuError
    | GpuSlow
)
Event = Annotated[AnyEvent, Field(discriminator="do")]
#: The schema class of each kind.
SCHEMAS: Mapping[Kind, type[EventBase]] = {
    Kind.CRASH: Crash,
    Kind.HANG: Hang,
    Kind.LEAVE: Leave,
    Kind.CRASH_HOST: CrashHost,
    Kind.SLOW: Slow,
    Kind.JOIN: Join,
    Kind.ADD_WORLD: AddWorld,
    Kind.REMOVE_WORLD: RemoveWorld,
    Kind.PARTITION: Partition,
    Kind.DEGRADE: Degrade,
    Kind.POWER_OFF: PowerOff,
    Kind.GPU_HANG: GpuHang,
    Kind.GPU_ERROR: GpuError,
    Kind.GPU_SLOW: GpuSlow,
}
_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(Event)


def parse_event(fields: Mapping[str, Any]) -> AnyEvent:
    """An event from its fields (``at`` included); pydantic's ``ValidationError`` if bad."""
    return _ADAPTER.validate_python(dict(fields))
