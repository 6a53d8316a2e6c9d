"""Ctrl-C and SIGTERM during a real run, taken only where the controller waits.

A ``KeyboardInterrupt`` raised at an arbitrary bytecode could leave a lock held or a
record half written and deadlock the teardown; instead the handler only notes the signal
and wakes the controller's wait, and ``check`` raises ``Interrupted`` there.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from types import FrameType
from typing import Any

from mwsim.errors import Interrupted

TRAPPED = (signal.SIGINT, signal.SIGTERM)


class Waker:
    """A socket pair: anything may poke it to make the controller's wait return."""

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)
        self._writer.setblocking(False)

    def poke(self) -> None:
        with contextlib.suppress(OSError):  # full or closed: a wake is pending anyway
            self._writer.send(b"x")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self.reader.recv(4096)

    def fileno(self) -> int:
        return self.reader.fileno()

    def close(self) -> None:
        self.reader.close()
        self._writer.close()


class SignalTrap:
    """Turns SIGINT/SIGTERM into ``Interrupted`` raised by ``check`` (only in the main thread)."""

    def __init__(self, waker: Waker) -> None:
        self.waker = waker
        self.signum: int | None = None
        self.raised = False  # ``Interrupted`` was raised for it
        self.holding = False  # a teardown is under way: signals wait for it to finish
        self._previous: dict[int, Any] = {}

    def trap(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in TRAPPED:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        self.waker.poke()

    def check(self) -> None:
        """Raise ``Interrupted`` if a signal came (and no teardown is under way)."""
        if self.signum is not None and not self.holding:
            self.raised = True
            raise Interrupted(self.signum)

    def release(self) -> None:
        """Give the signals back to their previous handlers; one that came while the
        teardown held it (and was never raised) is passed on to them."""
        trapped = bool(self._previous)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        if trapped and self.signum is not None and not self.raised:
            self.raised = True
            signal.raise_signal(self.signum)
