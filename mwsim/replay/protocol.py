"""Messages between the controller and its agents, as small typed records.

Agents connect to the controller's listener, a Unix socket in a directory only its owner
can enter (it works from every network namespace of the run and opens nothing on any
network), and authenticate with the run's random key (HMAC challenge of
``multiprocessing.connection``: the key never crosses the socket). Payloads are JSON, never
pickle: ``send`` encodes a record as a JSON object with its ``type``, ``recv`` decodes
one and refuses anything that is not a known record with exactly its fields. The
agent's bootstrap reaches it through the fork server, so the key never shows in a
process listing. Agents stamp events with ``mono`` (their monotonic clock, shared by
every process on a host); the controller turns it into ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from typing import Any, ClassVar

import orjson

from mwsim.events import Kind
from mwsim.history import Record, from_dict
from mwsim.internal import jsonout

MAX_MESSAGE = 16 * 1024 * 1024


#: Set by a cluster node's host actor for the agents it forks: the node's id.
NODE_ENV = "MWSIM_NODE_ID"


@dataclass(frozen=True)
class Boot:
    """What an agent needs to start: who it is and how to reach the controller."""

    worker: str
    controller: str  # the listener: a Unix socket path, or tcp://HOST:PORT (channel.parse)
    authkey: str  # hex
    parent_pid: int
    runtime: str
    backend: str
    device: str
    store_addr: str  # the address of the agent's host: its world stores listen there
    workload: dict[str, Any]
    peers: tuple[str, ...] = ()
    rendezvous: int | None = None
    rendezvous_addr: str | None = None
    netns: str | None = None  # the host's network namespace, joined right after the fork
    ifname: str | None = None  # the host's interface, for gloo's and NCCL's sockets
    watch_s: float = 0.02  # how often to poll the runtime's broken-world query

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Boot:
        return cls(**{**data, "peers": tuple(data["peers"])})


@dataclass(frozen=True)
class Message:
    """A control message; ``TYPE`` is its ``type`` on the wire."""

    TYPE: ClassVar[str] = ""


# -- controller -> agent ------------------------------------------------------------------


@dataclass(frozen=True)
class InitWorld(Message):
    """Form a world incarnation as ``rank``; rank 0 hosts the store on its own host at a
    port it picks (``port`` None); the others join it at ``addr``:``port``."""

    TYPE = "init_world"
    world: str
    life: int
    rank: int
    members: list[str]
    port: int | None = None
    addr: str | None = None


@dataclass(frozen=True)
class Start(Message):
    """Start the workload on every world at monotonic instant ``t0``."""

    TYPE = "start"
    t0: float


@dataclass(frozen=True)
class SetDelay(Message):
    """Delay each op by ``delay_ms`` until monotonic ``until`` (None: for good; 0: no delay)."""

    TYPE = "set_delay"
    delay_ms: float
    until: float | None = None


@dataclass(frozen=True)
class RemoveWorld(Message):
    """Stop the world's workload with its peers, then remove it."""

    TYPE = Kind.REMOVE_WORLD.value
    world: str


@dataclass(frozen=True)
class Leave(Message):
    """Stop every world at its next op boundary, remove them all, exit 0."""

    TYPE = Kind.LEAVE.value


@dataclass(frozen=True)
class GpuFault(Message):
    """Act on this worker's GPU: start (or, ``ending``, end) the GPU fault ``do`` (a kind
    of the vocabulary); acknowledged once the GPU shows it in effect (or over)."""

    TYPE = "gpu_fault"
    do: str
    ending: bool = False
    for_s: float | None = None  # a GPU hang: how long its kernel runs (None: a day)
    factor: float = 1.0  # a GPU slow


@dataclass(frozen=True)
class Stop(Message):
    """Stop recording (the judged interval is over)."""

    TYPE = "stop"


@dataclass(frozen=True)
class Exit(Message):
    """End the process now."""

    TYPE = "exit"


# -- agent -> controller ------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Message):
    """The first message on a new connection: who is calling."""

    TYPE = "hello"
    worker: str
    pid: int
    node: str | None = None  # the cluster node it runs on, as its environment says


@dataclass(frozen=True)
class Ready(Message):
    """The runtime is up; commands may come."""

    TYPE = "ready"


@dataclass(frozen=True)
class Port(Message):
    """Rank 0 of a world incarnation bound its store at ``addr``:``port``."""

    TYPE = "port"
    world: str
    life: int
    port: int
    addr: str


@dataclass(frozen=True)
class Events(Message):
    """History records stamped with the agent's monotonic clock (one batch per loop
    iteration); on the wire each is its history line's JSON object."""

    TYPE = "events"
    records: tuple[Record, ...] = ()


@dataclass(frozen=True)
class Ack(Message):
    """A command took effect (``what``: the command)."""

    TYPE = "ack"
    what: str


def ack_of(message: Message) -> str:
    """What an agent's ``Ack`` of a command says, so the controller can tell which of its
    commands took effect."""
    if isinstance(message, GpuFault):
        return f"{message.TYPE} {message.do} {'end' if message.ending else 'start'}"
    return message.TYPE


@dataclass(frozen=True)
class Stopped(Message):
    """Recording has stopped."""

    TYPE = "stopped"


@dataclass(frozen=True)
class Fatal(Message):
    """The agent failed; ``message`` is the end of its traceback."""

    TYPE = "fatal"
    message: str


TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        InitWorld,
        Start,
        SetDelay,
        RemoveWorld,
        Leave,
        GpuFault,
        Stop,
        Exit,
        Hello,
        Ready,
        Port,
        Events,
        Ack,
        Stopped,
        Fatal,
    )
}


def encode(message: Message) -> dict[str, Any]:
    if isinstance(message, Events):
        return {"type": message.TYPE, "records": [r.to_dict() for r in message.records]}
    return {"type": message.TYPE, **{f.name: getattr(message, f.name) for f in fields(message)}}


def decode(data: Any) -> Message:
    """An agent's or the controller's message from its JSON object; ``ValueError`` for
    anything else."""
    return decode_as(data, TYPES)


def decode_as(data: Any, types: dict[str, type[Message]]) -> Message:
    """One of ``types`` from its JSON object (by its ``type``, with exactly its fields)."""
    if not isinstance(data, dict) or data.get("type") not in types:
        raise ValueError(f"malformed control message: {str(data)[:200]}")
    cls = types[data["type"]]
    names = {f.name for f in fields(cls)}
    given = set(data) - {"type"}
    if not given <= names:
        raise ValueError(f"{cls.TYPE} message with unknown fields: {sorted(given - names)}")
    values = {k: v for k, v in data.items() if k != "type"}
    if cls is Events:  # each record checked as a history line is
        values["records"] = tuple(from_dict(r) for r in values.get("records", ()))
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"malformed {cls.TYPE} message: {exc}") from None


def send(conn: Connection, message: Message) -> None:
    conn.send_bytes(jsonout.dumpb(encode(message)))


def recv(conn: Connection) -> Message:
    return decode(orjson.loads(conn.recv_bytes(MAX_MESSAGE)))
