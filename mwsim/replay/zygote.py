"""A fork server for agents: imports torch and the runtime once, then forks every agent
from that warm image.

A deployment then comes up in milliseconds instead of one torch import per worker, and a
joining worker is up about as fast as its world can form. Each agent is still a real
process: it leads its own session, receives real signals, and its exit status is the
kernel's (the zygote reaps it and reports ``{"exit": pid, "code": code}``). The zygote
imports with single-threaded BLAS so that the image it forks from has no other threads.

Protocol (JSON lines): controller -> zygote ``{"fork": id, "boot": {...}, "log": path}``;
zygote -> controller ``{"ready": pid}``, ``{"forked": id, "pid": pid}``,
``{"exit": pid, "code": code}``. End of input: the zygote kills its agents and exits.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

from mwsim.errors import ZygoteError

PRELOAD = ("numpy", "torch", "torch.distributed", "mwsim.workloads", "mwsim.replay.agent")
THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _multiworld_ready() -> bool:
    """Importing an unconfigured multiworld patches torch and exits: only preload it when set up."""
    spec = importlib.util.find_spec("multiworld")
    if spec is None or not spec.submodule_search_locations:
        return False
    marker = Path(next(iter(spec.submodule_search_locations))) / "init.txt"
    return marker.exists() and marker.read_text().strip() == "true"


def preload(runtime: str) -> None:
    """Import what every agent needs, so forks start warm."""
    names = list(PRELOAD)
    if _multiworld_ready():
        names += ["multiworld.manager", "multiworld.communicator"]
    for name in names:
        importlib.import_module(name)
    from mwsim import runtimes

    with contextlib.suppress(LookupError):
        runtimes.load(runtime)


def _write(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _child(request: dict[str, Any], keep: tuple[int, ...]) -> None:
    """In the forked agent: own session, own output, then be the agent."""
    from mwsim.replay.agent import serve
    from mwsim.replay.protocol import Boot

    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for fd in (*keep, log, devnull):  # the zygote's own pipes are not the agent's business
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        serve(Boot.from_dict(request["boot"]))
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
        _write({"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(runtime: str) -> None:
    from mwsim.replay.agent import die_with_parent

    die_with_parent(os.getppid())
    preload(runtime)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    _write({"ready": os.getpid()})
    pending = b""
    while True:
        ready, _, _ = select.select([0, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(children)
        if 0 not in ready:
            continue
        chunk = os.read(0, 65536)
        if not chunk:  # the controller is done (or gone): take the agents down with us
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            os._exit(0)
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                _child(request, (0, wake_r, wake_w))
            children.add(pid)
            _write({"forked": request["fork"], "pid": pid})


class Zygote:
    """The controller's handle on a fork server: start, fork agents, read reports, stop."""

    def __init__(self, runtime: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        env = {**(env if env is not None else os.environ), **THREAD_LIMITS}
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mwsim.replay.zygote", runtime],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
                env=env,
                close_fds=True,
            )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._out, False)
        self._buffer = b""
        self._backlog: list[dict[str, Any]] = []
        self._ids = count()
        self.ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """Is the fork server still running (a shared one can be reused)?"""
        return self.proc.poll() is None

    def fileno(self) -> int:
        return self._out

    def _lines(self) -> list[dict[str, Any]]:
        try:
            chunk = os.read(self._out, 65536)
        except BlockingIOError:
            return []
        if not chunk:
            raise ZygoteError(f"the fork server exited (code {self.proc.poll()})")
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def read(self) -> list[dict[str, Any]]:
        """Reports that arrived (``exit`` records), without blocking."""
        out, self._backlog = self._backlog, []
        with contextlib.suppress(ZygoteError):
            out += self._lines()
        return out

    def _until(self, match: Callable[[dict[str, Any]], bool], deadline: float) -> dict[str, Any]:
        while True:
            for message in self._lines():
                if match(message):
                    return message
                self._backlog.append(message)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ZygoteError("the fork server did not answer in time")
            select.select([self._out], [], [], left)

    def wait_ready(self, timeout_s: float) -> None:
        if not self.ready:
            self._until(lambda m: "ready" in m, time.monotonic() + timeout_s)
            self.ready = True

    def fork(self, boot: dict[str, Any], log: Path, timeout_s: float = 30.0) -> int:
        """Start an agent; its pid."""
        ident = next(self._ids)
        request = {"fork": ident, "boot": boot, "log": str(log)}
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        reply = self._until(lambda m: m.get("forked") == ident, time.monotonic() + timeout_s)
        return int(reply["pid"])

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the fork server (it kills any agent still alive) and reap it."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout_s)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    serve(sys.argv[1] if len(sys.argv) > 1 else "multiworld")


if __name__ == "__main__":
    main()
