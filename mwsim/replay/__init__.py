"""Real replay: a scenario executed on real processes running the real runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mwsim.errors import Inconclusive
from mwsim.replay.controller import Controller, RealRun, RunStatus
from mwsim.scenario import Scenario

__all__ = ["Controller", "Inconclusive", "RealRun", "RunStatus", "run_real"]


def run_real(scenario: Scenario, out_dir: str | Path, **options: Any) -> RealRun:
    """Replay ``scenario`` on real agent processes; the history lands in ``out_dir``."""
    return Controller(scenario, out_dir, **options).run()
