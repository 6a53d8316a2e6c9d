"""Real replays: real agent processes running the real multiworld on gloo.

Every replay of the session forks its agents from one warm fork server (it imports torch
once: 2-3 s saved per run); each run still gets its own agents, hosts and history.
"""

import importlib.util

import pytest

from mwsim import read_history
from mwsim.checks import facts
from mwsim.replay import run_real
from mwsim.replay.zygote import Zygote, agent_env
from mwsim.runtimes.multiworld import MultiWorldRuntime
from mwsim.testing import local_cluster

reason = MultiWorldRuntime.unavailable("gloo", 0)
if reason:  # never silently passed: the run reports the skip with its reason
    pytest.skip(f"real replay cannot run here: {reason}", allow_module_level=True)


@pytest.fixture(scope="session")
def zygote(tmp_path_factory):
    warm = Zygote("multiworld", tmp_path_factory.mktemp("zygote") / "zygote.log", agent_env())
    yield warm
    warm.stop()


@pytest.fixture(scope="session")
def ray_cluster():
    """A real three-node Ray cluster on this machine, each node in an emulated host
    claiming mwsim-host-h<i>, shared by the session (started once, stopped at the end)."""
    from mwsim.hosts import emulated

    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'mwsim[ray]'; make install does)")
    why = emulated.unavailable()
    if why is not None:
        pytest.skip(f"the local cluster lives in emulated hosts, but {why}")
    with local_cluster(3) as state:
        yield state


#: Replays of one scenario while the harness keeps falling behind (then the last one counts).
ATTEMPTS = 3
#: ... by this long at a time (shorter lags are common on 2 cores and explain little).
STALL_S = 0.5


@pytest.fixture
def replay(tmp_path, zygote):
    """Replay a scenario for real and return (outcome, history).

    Timing is what these tests assert, and it means something only where the harness kept
    up: a replay in which it fell behind by ``STALL_S`` or more at a time (its ``lag``
    records, as the checks read them: the controller late, or an agent's loop late while
    the CPU was saturated) is replayed, up to ``ATTEMPTS`` times; the last one is returned
    whatever it shows. ``steady=False`` takes the first replay as it is."""

    def _replay(scenario, steady=True, **options):
        options.setdefault("zygote", zygote if scenario.runtime == "multiworld" else None)
        for attempt in range(ATTEMPTS):
            out = tmp_path / (scenario.name + (f"-again{attempt}" if attempt else ""))
            outcome = run_real(scenario, out, **options)
            assert outcome.status == "completed", outcome.reason
            assert outcome.leftovers.clean, outcome.leftovers.describe()
            history = read_history(outcome.history)
            lags = [lag for lag in facts(history, scenario).lags if lag.hi - lag.lo >= STALL_S]
            if not steady or not lags:
                break
            print(f"replayed again: the harness fell behind ({lags[0].detail})")
        return outcome, history

    return _replay
