"""Real replays: real agent processes running the real multiworld on gloo.

Every replay of the session forks its agents from one warm fork server (it imports torch
once: 2-3 s saved per run); each run still gets its own agents, hosts and history.
"""

import pytest

from mwsim import read_history
from mwsim.replay import run_real
from mwsim.replay.controller import agent_env
from mwsim.replay.zygote import Zygote
from mwsim.runtimes.multiworld import MultiWorldRuntime

reason = MultiWorldRuntime.unavailable("gloo", 0)
if reason:  # never silently passed: the run reports the skip with its reason
    pytest.skip(f"real replay cannot run here: {reason}", allow_module_level=True)


@pytest.fixture(scope="session")
def zygote(tmp_path_factory):
    warm = Zygote("multiworld", tmp_path_factory.mktemp("zygote") / "zygote.log", agent_env())
    yield warm
    warm.stop()


@pytest.fixture
def replay(tmp_path, zygote):
    """Replay a scenario for real and return (outcome, history)."""

    def _replay(scenario, **options):
        options.setdefault("zygote", zygote if scenario.runtime == "multiworld" else None)
        outcome = run_real(scenario, tmp_path / scenario.name, **options)
        assert outcome.status == "completed", outcome.reason
        assert outcome.leftovers.clean, outcome.leftovers.describe()
        return outcome, read_history(outcome.history)

    return _replay
