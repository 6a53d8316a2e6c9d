"""The authenticated control channel: one mutual challenge-response, then JSON only.

Agents reach the controller, and the controller reaches a Ray node's host actor, over a
``multiprocessing`` connection (a Unix socket on one machine, TCP across machines). Before
anything else both ends prove they hold the run's key: each sends a random challenge and
checks the other's HMAC-SHA256 of both challenges, so the key never crosses the wire. After
that only JSON objects travel (``send_json`` / ``recv_json``); anything that does not
decode as one ends the connection (``ValueError``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import orjson

from mwsim.internal import jsonout

NONCE = 32
HANDSHAKE_MAX = 256
MAX_MESSAGE = 16 * 1024 * 1024
TCP = "tcp://"


class AuthenticationError(ConnectionError):
    """The other end does not hold the run's key."""


def _mac(key: bytes, role: bytes, *nonces: bytes) -> bytes:
    return hmac.new(key, role + b"".join(nonces), hashlib.sha256).digest()


def _recv_exactly(conn: Connection, size: int) -> bytes:
    data = conn.recv_bytes(HANDSHAKE_MAX)
    if len(data) != size:
        raise AuthenticationError("malformed handshake")
    return data


def serve_handshake(conn: Connection, key: bytes, within_s: float = 10.0) -> None:
    """The listening end's half; ``AuthenticationError`` if the peer lacks the key (or
    does not answer within ``within_s``)."""
    mine = os.urandom(NONCE)
    conn.send_bytes(mine)
    if not conn.poll(within_s):
        raise AuthenticationError("no answer to the challenge in time")
    reply = _recv_exactly(conn, NONCE + hashlib.sha256().digest_size)
    theirs, proof = reply[:NONCE], reply[NONCE:]
    if not hmac.compare_digest(proof, _mac(key, b"client", mine, theirs)):
        raise AuthenticationError("the peer does not hold the run's key")
    conn.send_bytes(_mac(key, b"server", theirs, mine))


def client_handshake(conn: Connection, key: bytes) -> None:
    """The connecting end's half; ``AuthenticationError`` if the listener lacks the key."""
    theirs = _recv_exactly(conn, NONCE)
    mine = os.urandom(NONCE)
    conn.send_bytes(mine + _mac(key, b"client", theirs, mine))
    proof = _recv_exactly(conn, hashlib.sha256().digest_size)
    if not hmac.compare_digest(proof, _mac(key, b"server", mine, theirs)):
        raise AuthenticationError("the listener does not hold the run's key")


def parse(address: str) -> tuple[Any, str]:
    """``tcp://HOST:PORT`` or a Unix socket path -> (address, family)."""
    if address.startswith(TCP):
        host, _, port = address[len(TCP) :].rpartition(":")
        return (host, int(port)), "AF_INET"
    return address, "AF_UNIX"


def listen(address: str | tuple[str, int], backlog: int = 128) -> Listener:
    """A listener on a Unix socket path or on ``(host, port)`` (port 0: any free one)."""
    family = "AF_UNIX" if isinstance(address, str) else "AF_INET"
    return Listener(address, family=family, backlog=backlog)


def describe(listener: Listener) -> str:
    """The listener's address as ``connect`` takes it."""
    address = listener.address
    if isinstance(address, tuple):
        return f"{TCP}{address[0]}:{address[1]}"
    return str(address)


def accept(listener: Listener, key: bytes, within_s: float = 10.0) -> Connection:
    """The next connection whose peer proved it holds ``key`` (others are closed)."""
    while True:
        conn = listener.accept()
        try:
            serve_handshake(conn, key, within_s)
            return conn
        except (AuthenticationError, EOFError, OSError):
            conn.close()


def connect(address: str, key: bytes) -> Connection:
    """Connect to a listener and prove we hold ``key`` (and that it does)."""
    where, family = parse(address)
    conn = Client(where, family=family)
    try:
        client_handshake(conn, key)
    except EOFError:
        conn.close()
        raise AuthenticationError(f"{address} refused the run's key") from None
    except BaseException:
        conn.close()
        raise
    return conn


def send_json(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(jsonout.dumpb(message))


def recv_json(conn: Connection) -> dict[str, Any]:
    """The next message; ``ValueError`` if it is not a JSON object."""
    message = orjson.loads(conn.recv_bytes(MAX_MESSAGE))
    if not isinstance(message, dict):
        raise ValueError("a control message must be a JSON object")
    return message
