"""The one random generator behind mwsim's stochastic parts (simulation and generation).

It is registered with ``hypothesis.register_random`` (as Trio registers its scheduler's
RNG), so a property test that reaches the simulator or a generator is reproducible: each
example starts from the state Hypothesis chose. ``simulate`` and ``generate`` seed it from
their ``seed`` argument, so the same seed gives byte-identical output.
"""

from __future__ import annotations

import random

RNG = random.Random(0)

try:
    from hypothesis import register_random
except ImportError:  # hypothesis is a dependency, but the RNG works without it
    pass
else:
    register_random(RNG)


def seeded(seed: int | str | None) -> random.Random:
    """Seed the shared generator and return it."""
    RNG.seed(0 if seed is None else seed)
    return RNG
