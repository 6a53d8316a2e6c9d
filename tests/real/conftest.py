"""Real replays: real agent processes running the real multiworld on gloo."""

import pytest

from mwsim import read_history
from mwsim.replay import run_real
from mwsim.runtimes.multiworld import MultiWorldRuntime

reason = MultiWorldRuntime.unavailable("gloo", 0)
if reason:  # never silently passed: the run reports the skip with its reason
    pytest.skip(f"real replay cannot run here: {reason}", allow_module_level=True)


@pytest.fixture
def replay(tmp_path):
    """Replay a scenario for real and return (outcome, history)."""

    def _replay(scenario, **options):
        outcome = run_real(scenario, tmp_path / scenario.name, **options)
        assert outcome.status == "completed", outcome.reason
        assert outcome.leftovers.clean, outcome.leftovers.describe()
        return outcome, read_history(outcome.history)

    return _replay
