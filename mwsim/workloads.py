"""The workloads a world runs in a real replay: ``stream``, ``request`` and ``allreduce``.

Tensor content is a pure function of (world, rank, seq), so any rank can verify what it
got without extra traffic: ``int64`` elements ``[seq, rank, flags, checksum, sent_ns,
payload...]``; ``sent_ns`` (the sender's monotonic clock, shared by every process on the
machine) is the one slot verification ignores: it gives each op its latency. A role loop
runs one world at one worker; it reports each completed op through ``record(seq, ok,
peer, latency_s)`` (one way for a stream, the round trip for a request, the call for an
all-reduce) and lets the runtime's exceptions propagate to the agent.
"""

from __future__ import annotations

import asyncio
import functools
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

HEADER = 5
SENT = 4  # the header slot of the send time
STOP = 1  # flag: the sender ends this world gracefully (remove_world)
MOD = 2**31 - 1

Record = Callable[[int, bool, "int | None", float], None]


def since(sent_ns: int) -> float:
    """Seconds from a monotonic ``sent_ns`` stamp to now."""
    return (time.monotonic_ns() - sent_ns) / 1e9


@dataclass(frozen=True)
class Payload:
    """Expected tensor content for one world.

    The body of ``(rank, seq)`` is ``(31 * i + k) % MOD`` for element ``i``, with ``k`` a
    function of (world, rank, seq): one add and one remainder per op on a cached ``31 * i``
    (a few tensor calls, whatever the size), and its checksum by arithmetic, not a sum.
    """

    world: str
    tensor_bytes: int
    device: str = "cpu"

    @property
    def numel(self) -> int:
        return max(HEADER + 1, self.tensor_bytes // 8)

    @functools.cached_property
    def _base(self) -> torch.Tensor:
        n = self.numel - HEADER
        if 31 * n >= MOD:
            raise ValueError(f"tensor_bytes {self.tensor_bytes}: at most {MOD // 31 * 8} bytes")
        return torch.arange(n, dtype=torch.int64, device=self.device) * 31

    @functools.cached_property
    def _salt(self) -> int:
        return zlib.crc32(self.world.encode()) & 0xFFFF

    def _shift(self, rank: int, seq: int) -> int:
        return (seq * 1_000_003 + rank * 7_919 + self._salt) % MOD

    def _checksum(self, k: int) -> int:
        """``sum((31 * i + k) % MOD for i < n) % MOD``: the elements from the first with
        ``31 * i >= MOD - k`` on wrap around once (31 * n < MOD)."""
        n = self.numel - HEADER
        wrapped = max(0, n - -(-(MOD - k) // 31))
        return (31 * n * (n - 1) // 2 + n * k - MOD * wrapped) % MOD

    def _body(self, k: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """The body for shift ``k`` (into ``out`` if given)."""
        return torch.add(self._base, k, out=out).remainder_(MOD)

    def _body_np(self, k: int, out: np.ndarray | None = None) -> np.ndarray:
        """The same in numpy, for CPU tensors (a tenth of torch's cost per call)."""
        body: np.ndarray = np.add(self._base.numpy(), k, out=out)
        np.remainder(body, MOD, out=body)
        return body

    def make(self, rank: int, seq: int, flags: int = 0, sent_ns: int = 0) -> torch.Tensor:
        k = self._shift(rank, seq)
        head = [seq, rank, flags, self._checksum(k), sent_ns]
        out = torch.empty(self.numel, dtype=torch.int64, device=self.device)
        if out.is_cpu:  # numpy on the tensor's own memory
            view = out.numpy()
            self._body_np(k, view[HEADER:])
            view[:HEADER] = head
        else:
            self._body(k, out[HEADER:])
            out[:HEADER] = torch.tensor(head, dtype=torch.int64)
        return out

    def empty(self) -> torch.Tensor:
        return torch.zeros(self.numel, dtype=torch.int64, device=self.device)

    def check(self, got: torch.Tensor, rank: int) -> bool:
        """Is ``got`` exactly what ``rank`` sends for the seq and flags it carries?"""
        seq, sender, _flags, checksum, _sent = got[:HEADER].tolist()
        k = self._shift(rank, seq)
        if sender != rank or checksum != self._checksum(k):
            return False
        if got.is_cpu:
            return bool((got.numpy()[HEADER:] == self._body_np(k)).all())
        return bool(torch.equal(got[HEADER:], self._body(k)))

    def reduced(self, size: int, seq: int, flags: list[int]) -> torch.Tensor:
        """The exact all-reduce sum of every rank's ``make(rank, seq, flags[rank])``."""
        return torch.stack([self.make(r, seq, flags[r]) for r in range(size)]).sum(dim=0)


class Link(Protocol):
    """One world as a role sees it."""

    rank: int
    size: int

    async def send(self, tensor: torch.Tensor, dst: int) -> None: ...
    async def recv(self, tensor: torch.Tensor, src: int) -> None: ...
    async def all_reduce(self, tensor: torch.Tensor) -> None: ...


@dataclass
class Slowness:
    """A worker's slow fault: each of its ops waits ``delay_s`` until ``until`` (monotonic)."""

    delay_s: float = 0.0
    until: float = 0.0


@dataclass
class Pace:
    """When the next op may start: every ``interval_s``, plus the worker's slow delay."""

    interval_s: float
    next_at: float = 0.0
    slowness: Slowness = field(default_factory=Slowness)

    async def slow(self) -> None:
        if self.slowness.delay_s and time.monotonic() < self.slowness.until:
            await asyncio.sleep(self.slowness.delay_s)

    async def tick(self) -> None:
        """Wait for this op's slot, then any slow delay. Late ops are not bunched up."""
        now = time.monotonic()
        self.next_at = max(self.next_at + self.interval_s, now)
        if self.next_at > now:
            await asyncio.sleep(self.next_at - now)
        await self.slow()


@dataclass
class Control:
    """How the agent steers a role: ``stop`` ends the world gracefully with its peers
    (remove_world); ``halt`` ends at the next op boundary without telling them (leave)."""

    stop: bool = False
    halt: bool = False


async def stream(link: Link, payload: Payload, pace: Pace, ctl: Control, record: Record) -> None:
    """Ranks > 0 send to rank 0 every interval; rank 0 records each tensor it gets."""
    if link.rank > 0:
        seq = 0
        while not ctl.halt:
            await pace.tick()
            if ctl.halt:
                return
            flags = STOP if ctl.stop else 0
            await link.send(payload.make(link.rank, seq, flags, time.monotonic_ns()), 0)
            if flags:
                return
            seq += 1
        return
    buf = payload.empty()
    live = set(range(1, link.size))
    while live and not ctl.halt:
        for src in sorted(live):
            await pace.slow()
            await link.recv(buf, src)
            if int(buf[2]) & STOP:
                live.discard(src)
                continue
            record(int(buf[0]), payload.check(buf, src), src, since(int(buf[SENT])))


async def request(link: Link, payload: Payload, pace: Pace, ctl: Control, record: Record) -> None:
    """Rank 0 sends a request to each other rank and waits for the reply (one op per round trip)."""
    buf = payload.empty()
    if link.rank == 0:
        seq = 0
        while not ctl.halt:
            await pace.tick()
            if ctl.halt:
                return
            flags = STOP if ctl.stop else 0
            for dst in range(1, link.size):
                sent = time.monotonic_ns()
                await link.send(payload.make(0, seq, flags, sent), dst)
                if flags:
                    continue
                await link.recv(buf, dst)
                ok = payload.check(buf, dst) and int(buf[0]) == seq
                record(seq, ok, dst, since(sent))
            if flags:
                return
            seq += 1
        return
    while not ctl.halt:
        await link.recv(buf, 0)
        seq, flags = int(buf[0]), int(buf[2])
        if flags & STOP:
            return
        await pace.slow()
        # a corrupted request is answered with a reply for another seq, which rank 0 flags
        answer = seq if payload.check(buf, 0) else seq + 1
        await link.send(payload.make(link.rank, answer), 0)


async def allreduce(link: Link, payload: Payload, pace: Pace, ctl: Control, record: Record) -> None:
    """Every rank all-reduces every interval and checks the exact sum."""
    seq = 0
    while not ctl.halt:
        await pace.tick()
        if ctl.halt:
            return
        flags = STOP if ctl.stop else 0
        buf = payload.make(link.rank, seq, flags)
        started = time.monotonic_ns()
        await link.all_reduce(buf)
        stopping = int(buf[2]) > 0
        # who asked to stop is unknown to the others; check the body, then the flag count
        expected = payload.reduced(link.size, seq, [0] * link.size)
        ok = torch.equal(buf[HEADER:], expected[HEADER:]) and int(buf[0]) == seq * link.size
        ok = ok and int(buf[1]) == link.size * (link.size - 1) // 2
        record(seq, ok, None, since(started))
        if stopping:
            return
        seq += 1


ROLES: dict[str, Callable[..., Any]] = {
    "stream": stream,
    "request": request,
    "allreduce": allreduce,
}
