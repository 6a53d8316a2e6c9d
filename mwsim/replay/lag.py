"""The harness watching itself: when the controller or the machine fell behind.

A real run's timing verdicts mean something only if the harness kept up. Three things are
recorded as ``lag`` history events: the controller's own loop waking late or playing an
event late (``source: controller``), an agent's event loop running late (``source: agent``,
sent by the agent), and the machine's CPU saturated (``source: cpu``: over a sample, the
share of time some task waited for a CPU, from the kernel's pressure stall information,
or the CPUs' busy share with hypervisor steal where the kernel has none). The checks turn a
timing violation that such lag explains (as long as the violation is late, within its
stretch) into ``unknown`` with it as evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mwsim.history import Source

#: A loop this late (seconds) is reported.
LAG_S = 0.2
#: The machine's CPU is sampled this often (seconds).
CPU_SAMPLE_S = 0.5
#: A sample with at least this share of time waiting for a CPU is saturation.
SATURATED = 0.5

PSI = Path("/proc/pressure/cpu")
STAT = Path("/proc/stat")


def _psi_total_s() -> float | None:
    """Seconds some task has waited for a CPU since boot (None: no pressure information)."""
    try:
        first = PSI.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(item.split("=", 1) for item in first.split()[1:])
    return int(fields["total"]) / 1e6


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, all) jiffies of every CPU since boot, hypervisor steal counted busy."""
    try:
        values = [int(v) for v in STAT.read_text().splitlines()[0].split()[1:]]
    except (OSError, IndexError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


@dataclass
class CpuWatch:
    """Samples the machine's CPU pressure; ``sample`` returns a ``lag`` record's fields
    when the CPU was saturated over the time since the last sample."""

    at: float = -1.0
    psi: float | None = None
    ticks: tuple[int, int] | None = None

    def sample(self, now: float) -> dict[str, Any] | None:
        if self.at >= 0 and now - self.at < CPU_SAMPLE_S:
            return None
        psi, ticks = _psi_total_s(), _cpu_ticks()
        share = None
        if self.at >= 0 and now > self.at:
            if psi is not None and self.psi is not None:
                share = (psi - self.psi) / (now - self.at)
            elif ticks is not None and self.ticks is not None and ticks[1] > self.ticks[1]:
                share = (ticks[0] - self.ticks[0]) / (ticks[1] - self.ticks[1])
        over = now - self.at
        self.at, self.psi, self.ticks = now, psi, ticks
        if share is None or share < SATURATED:
            return None
        what = "some task waited for a CPU" if psi is not None else "the CPUs were busy"
        return {
            "source": Source.CPU,
            "lag_s": round(over, 3),
            "share": round(min(share, 1.0), 2),
            "detail": f"{what} {min(share, 1.0):.0%} of the time",
        }
