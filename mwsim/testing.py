"""Helpers for testing with mwsim: build scenarios inline, read histories by world.

Shipped with the library (as Trio ships its testing helpers) so users' own tests can
replay and inspect scenarios the way mwsim's tests do.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

from mwsim.history import Broken, Fault, History, Op, Resumed
from mwsim.scenario import Scenario, parse_inline

#: The environment variable a test sets (inherited by every process it starts) to find
#: afterwards what it left running.
TAG = "MWSIM_TEST_TAG"


def tagged_processes(tag: str) -> list[str]:
    """Live processes but this one (``pid command line``) whose environment has
    ``MWSIM_TEST_TAG=tag``: what a test that tagged what it started left running."""
    import psutil

    left = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(TAG) == tag:
                left.append(f"{proc.pid} {' '.join(proc.cmdline())}")
    return left


def scenario(yaml_text: str, name: str = "inline") -> Scenario:
    """Parse a scenario written inline (dedented); ``mwsim: 1`` and ``name`` may be left out."""
    return parse_inline(yaml_text, name)


def ops_by_world(history: History) -> dict[str, list[Op]]:
    """Op records per world, in time order."""
    out: dict[str, list[Op]] = defaultdict(list)
    for e in history.of(Op):
        out[e.world].append(e)
    return dict(out)


def largest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch in ``[start, end]`` without any of ``times``."""
    inside = sorted(t for t in times if start <= t <= end)
    edges = [start, *inside, end]
    return max(b - a for a, b in pairwise(edges))


def broken_reports(history: History) -> dict[str, dict[str, float]]:
    """``{world: {worker: first time it reported the world broken}}``."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for e in history.of(Broken):
        out[e.world].setdefault(e.worker, e.t)
    return dict(out)


def faults(history: History, do: str | None = None) -> list[Fault]:
    return [e for e in history.of(Fault) if do is None or e.do == do]


def in_force(action: Fault | Resumed) -> float:
    """When a confirmed fault (or its end) was surely in effect: its start plus the time
    its confirmation took (the kernel's or the process's state read back as asked)."""
    assert action.confirmed and action.confirm_s is not None, action
    return action.t + action.confirm_s


# -- hypothesis ---------------------------------------------------------------------------


def register_profiles() -> None:
    """Register the ``ci`` and ``dev`` Hypothesis profiles of mwsim's property tests.

    ``ci``: derandomized (every run draws the same examples), no deadline (real processes
    have no steady speed), bounded examples, no database. ``dev``: random, ten times the
    examples, failing examples kept in ``.hypothesis/examples/`` and replayed first.
    """
    from hypothesis import HealthCheck, settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    slow_is_fine = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile(
        "ci",
        derandomize=True,
        deadline=None,
        max_examples=200,
        database=None,
        print_blob=True,
        suppress_health_check=slow_is_fine,
    )
    settings.register_profile(
        "dev",
        deadline=None,
        max_examples=2000,
        database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
        suppress_health_check=slow_is_fine,
    )


def real_settings(least: int = 2, **extra: Any) -> Any:
    """The active Hypothesis profile scaled for examples that each start a deployment:
    a hundredth of its examples, at least ``least``, and no shrinking (each try would be
    a deployment; ``mwsim.fuzz.minimize`` shrinks by replay instead)."""
    from hypothesis import Phase, settings

    current = settings.default
    assert current is not None
    examples = max(least, current.max_examples // 100)
    phases = [p for p in current.phases if p is not Phase.shrink]
    return settings(current, max_examples=examples, phases=phases, **extra)


def reproducible_only(test: Callable[[], None]) -> list[str]:
    """Run a Hypothesis test of live processes; a failure that its replay does not show
    again (Hypothesis's ``FlakyFailure``: timing on a loaded machine, or a rare race) is
    returned, not raised, so the caller can report it; a reproducible one is raised. So
    is a failure before the example drew anything (a deployment that did not come up)
    where an earlier example with the same start drew on: Hypothesis calls that
    ``FlakyStrategyDefinition``, raised while handling the failure."""
    from hypothesis.errors import FlakyFailure, FlakyStrategyDefinition

    try:
        test()
    except FlakyFailure as flaky:
        return [str(e).splitlines()[0] for e in flaky.exceptions] or [str(flaky)]
    except FlakyStrategyDefinition as flaky:
        if flaky.__context__ is None:
            raise
        return [str(flaky.__context__).splitlines()[0]]
    return []


@contextlib.contextmanager
def local_cluster(nodes: int = 3) -> Iterator[dict[str, Any]]:
    """A local Ray cluster (``mwsim cluster start``) for a test session: the one running,
    if it has ``nodes`` nodes, else one started here and stopped at the end, checking that
    no trace of it is left (``AssertionError`` naming what is)."""
    from mwsim.hosts import cluster
    from mwsim.replay import raynodes

    running = cluster.read_state()
    ours = running is None or running.get("nodes") != nodes
    state = cluster.start(nodes) if ours else running
    assert state is not None
    try:
        yield state
    finally:
        raynodes.disconnect()  # a client left connected would retry a stopped cluster
        if ours:
            cluster.stop()
            left = cluster.leftovers()
            if left:
                raise AssertionError(f"mwsim cluster stop left {left}")


def cluster_processes(pattern: str = "mwsim.replay.zygote") -> list[str]:
    """Processes in the local cluster's namespaces (``namespace pid command line``) whose
    command line contains ``pattern``: by default fork servers and their agents,
    ``HostActor`` finds the host actors (Ray names actor processes after their class)."""
    import psutil

    from mwsim.hosts import cluster, emulated

    found = []
    for namespace in cluster.namespaces():
        for pid in emulated.pids_in(namespace):
            with contextlib.suppress(psutil.Error):
                line = " ".join(psutil.Process(pid).cmdline())
                if pattern in line:
                    found.append(f"{namespace} {pid} {line[:200]}")
    return found


def namespace_sockets(namespace: str) -> list[tuple[str, int, str, int, str]]:
    """Every TCP and UDP socket of a network namespace as the kernel lists it:
    (local address, port, remote address, port, state in hex; ``0A`` is listening)."""
    from mwsim.hosts import emulated

    out = []
    for table in ("tcp", "udp"):
        text = emulated.run(["ip", "netns", "exec", namespace, "cat", f"/proc/net/{table}"])
        for line in text.splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            out.append((*_address(local), *_address(remote), state))
    return out


def _address(hexed: str) -> tuple[str, int]:
    host, port = hexed.split(":")
    octets = bytes.fromhex(host)[::-1]  # little-endian on the hosts this runs on
    return ".".join(str(o) for o in octets), int(port, 16)
