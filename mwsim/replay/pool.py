"""The agent processes of a real run: forked, connected, commanded, reaped.

Agents are forked at their host's site (:mod:`mwsim.replay.sites`: the warm fork server
here, or a Ray node's host actor) and call back to the pool's authenticated listener
(:mod:`mwsim.replay.channel`: a Unix socket in a private directory, reachable from every
network namespace of the run; or TCP, from the nodes of a cluster). A command to an
agent that is not up yet is held until it says ``ready``. ``poll`` waits (with a
deadline) for anything to happen: a new connection, a message, an exit reaped by a
site; messages go to the handler registered for their type.
The pool never blocks on an agent.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import selectors
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from mwsim.hosts.emulated import owner_gone
from mwsim.replay import channel, protocol
from mwsim.replay.processes import Leftovers
from mwsim.replay.protocol import Ack, Boot, Hello, Message, Ready, Stopped
from mwsim.replay.signals import Waker
from mwsim.replay.sites import Site

HELLO_WITHIN_S = 10.0
HOME_PREFIX = "mwsim-ctl-"  # + the controller's pid: its listener's private directory
#: + the pid of a pytest session: where its warm fork servers log (removed at its end)
ZYGOTE_HOME_PREFIX = "mwsim-zygote-"
#: A busy controller takes agents' messages at most this often (see ``AgentPool.poll``).
COALESCE_S = 0.005
#: Rounds of "whatever else is ready now" per wake, so a flood cannot hold the wait forever.
MAX_ROUNDS = 64


@dataclass
class AgentProc:
    """One agent process as the controller sees it."""

    worker: str
    incarnation: int
    pid: int  # also its process group: every agent leads its own session
    log: Path
    site: Site  # where it runs: its signals, state and exit come from there
    conn: Connection | None = None
    ready: bool = False
    stop_acked: bool = False
    code: int | None = None  # exit status once reaped (negative: killed by that signal)
    expect_exit: str | None = None  # why an exit is expected: a fault, or the teardown
    held: list[Message] = field(default_factory=list)  # commands sent once ready
    on_ready: list[Callable[[], None]] = field(default_factory=list)
    acks: Counter[str] = field(default_factory=Counter)  # acknowledged commands, by ack
    reaped: bool = False  # its exit is recorded

    @property
    def alive(self) -> bool:
        return self.code is None


Handler = Callable[[AgentProc, Any], None]


def clean_dead_homes(root: Path | None = None) -> list[str]:
    """Remove the temporary directories of processes that died without their teardown (a
    controller's listener, a pytest session's fork-server logs: a SIGKILL leaves them; the
    next run or ``mwsim clean`` calls this); their paths."""
    removed = []
    for prefix in (HOME_PREFIX, ZYGOTE_HOME_PREFIX):
        for path in Path(root or tempfile.gettempdir()).glob(f"{prefix}*-*"):
            try:
                pid = int(path.name[len(prefix) :].split("-", 1)[0])
                made = path.stat().st_mtime
            except (ValueError, OSError):
                continue  # not one of ours (or gone meanwhile)
            if owner_gone(pid, made):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
    return removed


def log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class AgentPool:
    """Every agent of a run; ``open`` before the first ``spawn``, ``shutdown`` at the end."""

    def __init__(
        self,
        logs: Path,
        waker: Waker,
        handlers: Mapping[type[Message], Handler],
        on_exit: Callable[[AgentProc], None],
        key: bytes | None = None,
    ) -> None:
        self.logs = logs
        self.waker = waker
        self.on_exit = on_exit
        self.handlers: dict[type[Message], Handler] = {
            Ready: self._on_ready,
            Ack: self._on_ack,
            Stopped: self._on_stopped,
            **handlers,
        }
        self.key = key if key is not None else secrets.token_bytes(32)
        self.every: list[AgentProc] = []
        self.current: dict[str, AgentProc] = {}  # the latest incarnation of each worker
        self.by_pid: dict[int, AgentProc] = {}
        self.accepted: queue.Queue[tuple[Hello, Connection]] = queue.Queue()
        self._listener: Listener | None = None
        self.sites: dict[str, Site] = {}  # by topology host
        self._home: str | None = None  # the listener's private directory
        # one selector for the whole run: the waker, the fork server, each agent's connection
        self._selector = selectors.DefaultSelector()
        self._busy_at = -1.0  # when a message was last taken

    @property
    def address(self) -> str:
        assert self._listener is not None, "listen() first"
        return channel.describe(self._listener)

    def distinct_sites(self) -> list[Site]:
        return list({id(site): site for site in self.sites.values()}.values())

    def listen(self, on: str | None = None) -> None:
        """Listen for agents: on a Unix socket (``on`` None), or on TCP at address ``on``
        (agents on other machines); a thread accepts them (``accept`` blocks)."""
        if on is None:
            clean_dead_homes()
            # mode 0700: the owner's only; named by our pid so a successor can clean it
            self._home = tempfile.mkdtemp(prefix=f"{HOME_PREFIX}{os.getpid()}-")
            self._listener = channel.listen(str(Path(self._home) / "controller.sock"))
        else:
            self._listener = channel.listen((on, 0))
        self._selector.register(self.waker.reader, selectors.EVENT_READ, None)
        threading.Thread(target=self._accept_loop, name="mwsim-accept", daemon=True).start()

    def open(self, sites: Mapping[str, Site]) -> None:
        """Where each host's agents are forked (after ``listen``)."""
        self.sites = dict(sites)
        for site in self.distinct_sites():
            self._selector.register(site.fileno(), selectors.EVENT_READ, None)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn = channel.accept(self._listener, self.key, HELLO_WITHIN_S)
            except OSError:
                return  # listener closed
            except Exception:  # a malformed connection attempt
                continue
            try:
                hello = protocol.recv(conn) if conn.poll(HELLO_WITHIN_S) else None
            except (EOFError, OSError, ValueError):
                hello = None
            if not isinstance(hello, Hello):
                conn.close()
                continue
            self.accepted.put((hello, conn))
            self.waker.poke()

    # -- agents --------------------------------------------------------------------------

    def spawn(self, boot: Boot, host: str) -> AgentProc:
        """Fork an agent for ``boot.worker`` on ``host`` (a new incarnation if the name
        was used)."""
        incarnation = sum(1 for a in self.every if a.worker == boot.worker)
        suffix = "" if incarnation == 0 else f"~{incarnation}"
        log = self.logs / f"{boot.worker}{suffix}.log"
        site = self.sites[host]
        pid = site.fork(asdict(boot), log)
        agent = AgentProc(boot.worker, incarnation, pid, log, site)
        self.current[boot.worker] = agent
        self.every.append(agent)
        self.by_pid[pid] = agent
        return agent

    def alive(self, workers: Iterable[str]) -> list[AgentProc]:
        """The live current incarnations of ``workers``."""
        return [a for w in workers if (a := self.current.get(w)) is not None and a.alive]

    def command(self, worker: str, message: Message) -> None:
        """Send a command to a worker's agent; held until it is ready; dropped if it died."""
        agent = self.current.get(worker)
        if agent is None or not agent.alive:
            return
        if not agent.ready or agent.conn is None:
            agent.held.append(message)
            return
        with contextlib.suppress(OSError):  # it is dying; its exit is recorded when reaped
            protocol.send(agent.conn, message)

    def signal(self, agent: AgentProc, signum: int) -> None:
        """Signal the agent's whole process group."""
        agent.site.signal(agent.pid, signum)

    def is_stopped(self, agent: AgentProc) -> bool:
        return agent.site.is_stopped(agent.pid)

    # -- reports -------------------------------------------------------------------------

    def _on_ready(self, agent: AgentProc, _message: Ready) -> None:
        agent.ready = True
        held, agent.held = agent.held, []
        for command in held:
            self.command(agent.worker, command)
        callbacks, agent.on_ready = agent.on_ready, []
        for callback in callbacks:
            callback()

    def _on_ack(self, agent: AgentProc, message: Ack) -> None:
        agent.acks[message.what] += 1

    def _on_stopped(self, agent: AgentProc, _message: Stopped) -> None:
        agent.stop_acked = True

    def _attach(self, hello: Hello, conn: Connection) -> None:
        agent = self.current.get(hello.worker)
        if agent is None or agent.pid != hello.pid or agent.conn is not None:
            conn.close()  # not one of ours
            return
        agent.conn = conn
        self._selector.register(conn, selectors.EVENT_READ, agent)
        if Hello in self.handlers:
            self.handlers[Hello](agent, hello)

    def _disconnect(self, agent: AgentProc) -> None:
        if agent.conn is not None:
            self._selector.unregister(agent.conn)
            agent.conn.close()
            agent.conn = None

    def _drain(self, agent: AgentProc, everything: bool = True) -> None:
        """Handle what an agent has sent (its last words before dying count too); one
        message only when the selector said it is readable (it says so again if more)."""
        conn = agent.conn
        try:
            while conn is not None and (not everything or conn.poll()):
                message = protocol.recv(conn)
                self.handlers[type(message)](agent, message)
                if not everything:
                    return
        except (EOFError, OSError, ValueError):
            if agent.alive:
                self._disconnect(agent)

    def _exited(self, site: Site, pid: int, code: int) -> None:
        """A site reaped ``pid``: record how it ended."""
        agent = self.by_pid.get(pid)
        if agent is None or agent.site is not site or agent.reaped:
            return
        agent.code, agent.reaped = code, True
        self.on_exit(agent)
        if agent.conn is not None:
            self._drain(agent)
            self._disconnect(agent)

    def poll(self, timeout_s: float) -> None:
        """Handle everything that happens within ``timeout_s`` (returns early on a wake).

        Busy agents are served in batches: a wake within ``COALESCE_S`` of the last busy
        one waits out the rest of it first (messages queue in the sockets meanwhile), so
        the controller takes a few messages per wake, not one per op."""
        timeout = max(0.0, timeout_s)
        rest = self._busy_at + COALESCE_S - time.monotonic()
        if rest > 0:
            time.sleep(min(rest, timeout))
        for turn in range(MAX_ROUNDS):
            ready = self._selector.select(timeout if turn == 0 else 0.0)
            if not ready:
                break
            for key, _ in ready:
                if key.fileobj is self.waker.reader:
                    self.waker.drain()
                    while not self.accepted.empty():
                        self._attach(*self.accepted.get_nowait())
                elif key.data is not None:
                    self._busy_at = time.monotonic()
                    self._drain(key.data, everything=False)
        for site in self.distinct_sites():
            for reaped in site.read():
                self._exited(site, reaped.pid, reaped.code)

    # -- the end -------------------------------------------------------------------------

    def kill_all(self, reason: str) -> list[AgentProc]:
        """SIGKILL (and SIGCONT, for stopped ones) every live agent's group."""
        live = [a for a in self.every if a.alive]
        for agent in live:
            agent.expect_exit = agent.expect_exit or reason
            self.signal(agent, signal.SIGKILL)
            self.signal(agent, signal.SIGCONT)
        return live

    def shutdown(self, ports: Iterable[int]) -> tuple[Leftovers, dict[str, Any]]:
        """Stop listening, close every site; what was left behind, and what each site
        checked (by site name)."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
        ports = list(ports)
        groups: list[int] = []
        left: list[int] = []
        unchecked: list[str] = []
        checked: dict[str, Any] = {}
        for site in self.distinct_sites():
            found = site.close([a.pid for a in self.every if a.site is site], ports)
            groups += found.groups
            left += found.ports
            unchecked += found.unchecked
            checked[site.name] = site.checked()
        for agent in self.every:
            self._disconnect(agent)
        self._selector.close()
        found = Leftovers(tuple(groups), tuple(sorted(set(left))), unchecked=tuple(unchecked))
        return found, checked
