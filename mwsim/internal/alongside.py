"""Work done in a forked child while this process goes on: writing one artefact while
another is computed, on a machine with more than one CPU.

Only where forking is safe and pays: POSIX, this process runs one thread (a fork copies
no other thread, so no lock can be left held), and more than one CPU is ours. Elsewhere,
and whenever the child fails, the work is done here instead, so its errors raise here
with their tracebacks. The child is always reaped; on an exception (Ctrl-C included) it
is killed first.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def can_fork() -> bool:
    """Whether work may go to a forked child here."""
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cpus or 1) > 1


#: Work on fewer records than this is done here: a fork costs more than it saves.
WORTH_FORKING = 10_000


@contextmanager
def alongside(work: Callable[[], object], size: int = WORTH_FORKING) -> Iterator[None]:
    """Run ``work`` in a forked child while the ``with`` body runs here; on leaving, wait
    for it (or, where no child could run it, it failed, or its ``size`` in records is too
    small to be worth a fork, run ``work`` here)."""
    pid = _fork(work) if size >= WORTH_FORKING and can_fork() else None
    done = False
    try:
        yield
        if pid is not None:
            _, status = os.waitpid(pid, 0)
            pid, done = None, os.waitstatus_to_exitcode(status) == 0
    except BaseException:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    if not done:
        work()


def _fork(work: Callable[[], object]) -> int | None:
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid:
        return pid
    code = 1
    try:  # the child: the parent decides about Ctrl-C, and reports errors by redoing it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        work()
        code = 0
    finally:
        os._exit(code)
