"""Hypothesis profiles for mwsim's property tests, and the fixtures of the real ones.

Profiles (choose with ``pytest --hypothesis-profile=NAME``):

- ``ci`` (the default): derandomized, so every run draws the same examples; no deadline
  (real processes have no steady speed); bounded example counts; no example database.
- ``dev``: random, ten times the examples, and failing examples kept in Hypothesis's
  database at ``.hypothesis/examples/`` (replayed first on the next run).

Tests that start real processes run a hundredth of the profile's examples (at least 2),
through ``mwsim.testing.real_settings``.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import settings

from mwsim.runtimes.multiworld import MultiWorldRuntime
from mwsim.testing import TAG, register_profiles, tagged_processes

register_profiles()
settings.load_profile("ci")


@pytest.fixture
def needs_multiworld() -> None:
    """Skip (with the reason, never silently) where real MultiWorld cannot run."""
    reason = MultiWorldRuntime.unavailable("gloo", 0)
    if reason:
        pytest.skip(f"real replay cannot run here: {reason}")


@pytest.fixture
def no_leftovers(monkeypatch: pytest.MonkeyPatch):
    """After the test, no process it started (tagged through its environment) may remain."""
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG, tag)
    yield
    left = tagged_processes(tag)
    assert not left, f"processes left behind: {left}"
