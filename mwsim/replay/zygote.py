"""A fork server for agents: imports torch and the runtime once, then forks every agent
from that warm image.

A deployment then comes up in milliseconds instead of one torch import per worker, and a
joining worker is up about as fast as its world can form. Each agent is still a real
process: it leads its own session, receives real signals, and its exit status is the
kernel's (the zygote reaps it and reports it ``Reaped``). The zygote
imports with single-threaded BLAS so that the image it forks from has no other threads.
What it imports is the runtime's to say (``Runtime.prepare`` and ``Runtime.preload``):
a fork server serves the runtimes of one image (``Runtime.image``) only.

Protocol: the typed messages of :mod:`mwsim.replay.sitewire`, as JSON lines on a pipe
pair of its own, never on stdout or stderr (which go to its log: a runtime that prints at
import cannot disturb it): controller -> zygote ``Fork``; zygote -> controller
``SiteReady`` or ``SiteFailed``, ``Forked``, ``Reaped``. End of input: the zygote kills
its agents and exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

from mwsim.errors import ZygoteError
from mwsim.replay import sitewire as wire
from mwsim.replay.protocol import Message

PRELOAD = ("numpy", "torch", "torch.distributed", "mwsim.workloads", "mwsim.replay.agent")
THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_replies = -1  # the fork server's end of its reply pipe
#: Run with ``-P``: the working directory (another checkout of mwsim, say) is not on the path.
_MAIN = "from mwsim.replay.zygote import main; main()"


def preload(runtime: str) -> dict[str, str | None]:
    """Import what every agent needs, so forks start warm: mwsim's agent and the
    runtime's own modules, after the runtime has prepared the process. Where each of the
    runtime's modules was loaded from (every agent forked inherits them)."""
    from mwsim import runtimes

    cls = runtimes.load(runtime)
    cls.prepare()
    runtimes.import_all((*PRELOAD, *cls.preload))
    return {name: getattr(sys.modules[name], "__file__", None) for name in cls.preload}


def image(runtime: str) -> tuple[str, ...]:
    """The image a fork server for ``runtime`` forks from (equal images share one)."""
    from mwsim import runtimes

    return runtimes.load(runtime).image()


def agent_env() -> dict[str, str]:
    """The environment of the fork server (and so of every agent)."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _write(message: Message) -> None:
    os.write(_replies, (json.dumps(wire.encode(message)) + "\n").encode())


def _child(request: wire.Fork, keep: tuple[int, ...]) -> None:
    """In the forked agent: own session, own output, then be the agent."""
    from mwsim.replay.agent import serve
    from mwsim.replay.protocol import Boot

    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log = os.open(request.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for fd in (*keep, log, devnull):  # the zygote's own pipes are not the agent's business
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        serve(Boot.from_dict(request.boot))
    finally:
        os._exit(1)


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _write(wire.Reaped(pid, os.waitstatus_to_exitcode(status)))


def serve(runtime: str, requests: int, replies: int) -> None:
    """Be the fork server: requests arrive on fd ``requests``, replies go to ``replies``."""
    global _replies
    _replies = replies
    from mwsim.replay.agent import die_with_parent

    die_with_parent(os.getppid())
    try:
        loaded = preload(runtime)
    except Exception as exc:  # say why on the channel, the traceback in the log
        traceback.print_exc()
        _write(wire.SiteFailed(f"preloading runtime {runtime} failed: {exc!r}"[:1000]))
        os._exit(1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    _write(wire.SiteReady(os.getpid(), loaded))
    pending = b""
    while True:
        ready, _, _ = select.select([requests, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(children)
        if requests not in ready:
            continue
        chunk = os.read(requests, 65536)
        if not chunk:  # the controller is done (or gone): take the agents down with us
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            os._exit(0)
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = wire.decode(json.loads(line))
            if not isinstance(request, wire.Fork):
                raise ValueError(f"a fork server only forks, not {request.TYPE}")
            pid = os.fork()
            if pid == 0:
                _child(request, (requests, replies, wake_r, wake_w))
            children.add(pid)
            _write(wire.Forked(request.ident, pid))


class Zygote:
    """The controller's handle on a fork server: start, fork agents, read reports, stop."""

    def __init__(self, runtime: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.runtime = runtime
        self.image = image(runtime)
        env = {**(env if env is not None else os.environ), **THREAD_LIMITS}
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        fds = (requests_r, replies_w)
        try:
            with open(log, "ab") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-P", "-c", _MAIN, runtime, *map(str, fds)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    env=env,
                    close_fds=True,
                    pass_fds=fds,
                )
        except BaseException:
            for fd in (requests_w, replies_r):
                os.close(fd)
            raise
        finally:
            os.close(requests_r)
            os.close(replies_w)
        self._in = os.fdopen(requests_w, "wb")
        self._out = replies_r
        self._closed = False
        os.set_blocking(self._out, False)
        self._buffer = b""
        self._backlog: list[Message] = []
        self._ids = count()
        self.ready = False
        self.loaded: dict[str, str | None] = {}  # the runtime's modules, and their files

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """Is the fork server still running (a shared one can be reused)?"""
        return self.proc.poll() is None

    def fileno(self) -> int:
        return self._out

    def _lines(self) -> list[Message]:
        try:
            chunk = os.read(self._out, 65536)
        except BlockingIOError:
            return []
        if not chunk:
            raise ZygoteError(f"the fork server exited (code {self.proc.poll()})")
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        messages = [wire.decode(json.loads(line)) for line in lines if line.strip()]
        for message in messages:
            if isinstance(message, wire.SiteFailed):
                raise ZygoteError(f"{message.why} (traceback in {self.log})")
        return messages

    def read(self) -> list[wire.Reaped]:
        """Agents reaped since the last read, without blocking."""
        out, self._backlog = self._backlog, []
        with contextlib.suppress(ZygoteError):
            out += self._lines()
        return [m for m in out if isinstance(m, wire.Reaped)]

    def _until(
        self,
        match: Callable[[Message], bool],
        deadline: float,
        check: Callable[[], None] | None = None,
    ) -> Message:
        """The first message ``match`` accepts; ``check`` (if any) is called at least every
        0.1 s meanwhile (it may raise: a trapped Ctrl-C)."""
        while True:
            for message in self._lines():
                if match(message):
                    return message
                self._backlog.append(message)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ZygoteError("the fork server did not answer in time")
            select.select([self._out], [], [], left if check is None else min(left, 0.1))
            if check is not None:
                check()

    def wait_ready(self, timeout_s: float, check: Callable[[], None] | None = None) -> None:
        """Wait until it has imported the runtime (``check``: see ``_until``)."""
        if not self.ready:
            ready = self._until(
                lambda m: isinstance(m, wire.SiteReady), time.monotonic() + timeout_s, check
            )
            assert isinstance(ready, wire.SiteReady)
            self.loaded = dict(ready.loaded)
            self.ready = True

    def fork(self, boot: dict[str, Any], log: Path, timeout_s: float = 30.0) -> int:
        """Start an agent; its pid."""
        ident = next(self._ids)
        request = wire.encode(wire.Fork(ident, boot, str(log)))
        try:
            self._in.write((json.dumps(request) + "\n").encode())
            self._in.flush()
        except OSError as exc:
            raise ZygoteError(f"the fork server is gone ({exc})") from exc
        deadline = time.monotonic() + timeout_s
        reply = self._until(lambda m: isinstance(m, wire.Forked) and m.ident == ident, deadline)
        assert isinstance(reply, wire.Forked) and reply.pid is not None
        return reply.pid

    def stop(self, timeout_s: float = 5.0) -> bool:
        """End the fork server (it kills any agent still alive) and reap it; whether its
        group had to be killed. One still importing (a run interrupted at its start) has
        forked nothing and would not read its requests before it is done: it is killed."""
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self.proc.wait(timeout=timeout_s if self.ready else 0.0)
            killed = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout_s)
            killed = True
        if not self._closed:
            self._closed = True
            os.close(self._out)
        return killed

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """``python -c _MAIN RUNTIME REQUESTS_FD REPLIES_FD``: be the fork server."""
    runtime, requests, replies = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    serve(runtime, requests, replies)


if __name__ == "__main__":
    main()
