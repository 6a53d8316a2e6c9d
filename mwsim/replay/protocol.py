"""Messages between the controller and its agents.

Agents connect to the controller's loopback listener and authenticate with the run's
random key (HMAC challenge of ``multiprocessing.connection``). Payloads are JSON, never
pickle, so nothing unpickles data. The agent's bootstrap arrives on its stdin, so the key
never shows in a process listing.

Controller -> agent: ``init_world``, ``start``, ``slow``, ``remove_world``, ``leave``,
``stop``, ``exit``. Agent -> controller: ``hello``, ``ready``, ``port``, ``events``,
``ack``, ``stopped``, ``fatal``. Agents stamp events with ``mono`` (their monotonic
clock, shared by every process on a host); the controller turns it into ``t``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

MAX_MESSAGE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Boot:
    """What an agent needs to start: who it is and how to reach the controller."""

    worker: str
    controller: tuple[str, int]
    authkey: str  # hex
    parent_pid: int
    runtime: str
    backend: str
    device: str
    store_addr: str
    workload: dict[str, Any]
    peers: tuple[str, ...] = ()
    rendezvous: int | None = None

    def to_line(self) -> bytes:
        return (json.dumps(asdict(self)) + "\n").encode()

    @classmethod
    def from_line(cls, line: str) -> Boot:
        data = json.loads(line)
        data["controller"] = tuple(data["controller"])
        data["peers"] = tuple(data.get("peers", ()))
        return cls(**data)


def send(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message).encode())


def recv(conn: Connection) -> dict[str, Any]:
    message = json.loads(conn.recv_bytes(MAX_MESSAGE))
    if not isinstance(message, dict) or "type" not in message:
        raise ValueError(f"malformed control message: {message!r}")
    return message
