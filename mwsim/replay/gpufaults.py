"""GPU faults inside one agent process: a kernel that never returns (a hang), a sticky
CUDA error, GPU work that takes longer (``factor``). CUDA only; each says whether the GPU
shows the fault in effect, which is what the controller's confirmation waits for.

A GPU hang is a sleep kernel on the device's current stream, as long as the fault lasts:
NCCL waits for that stream before its own work, so every op of the worker's worlds waits
too, while the process, its event loop and MultiWorld's watchdog thread run on. A sticky
error is a device-side assert (an out-of-range index), after which the device fails every
call. A GPU slow adds, after each op, a sleep kernel of ``factor - 1`` times the op's
duration.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mwsim.events import Kind

#: How long a GPU hang without ``for_s`` keeps its kernel running.
FOREVER_S = 24 * 3600.0
#: How long the end of a GPU hang may take to show (the kernel was sized to end then).
SETTLE_S = 2.0


class GpuFaults:
    """The GPU faults of one agent's device (``cuda:N``; on any other, nothing happens and
    nothing is confirmed)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.factor = 1.0
        self._cycles_per_s: float | None = None

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def _torch(self) -> Any:
        import torch

        return torch

    def _rate(self) -> float:
        """Cycles per second of the GPU's sleep kernel, measured once."""
        if self._cycles_per_s is None:
            torch = self._torch()
            with torch.cuda.device(self.device):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)
                cycles = 50_000_000
                start.record()
                torch.cuda._sleep(cycles)
                end.record()
                end.synchronize()
                self._cycles_per_s = cycles / (start.elapsed_time(end) / 1000)
        return self._cycles_per_s

    def _sleep(self, seconds: float) -> None:
        """Enqueue a kernel that keeps the device busy for ``seconds``."""
        torch = self._torch()
        with torch.cuda.device(self.device):
            torch.cuda._sleep(max(1, int(seconds * self._rate())))

    def _busy(self) -> bool:
        torch = self._torch()
        return not torch.cuda.current_stream(self.device).query()

    async def act(self, kind: Kind, ending: bool, for_s: float | None, factor: float) -> bool:
        """Start (or end) a GPU fault; True once the GPU shows it."""
        if not self.cuda:
            return False
        if kind is Kind.GPU_HANG and not ending:
            self._sleep(for_s if for_s is not None else FOREVER_S)
            return self._busy()
        if kind is Kind.GPU_HANG:
            deadline = time.monotonic() + SETTLE_S
            while self._busy() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return not self._busy()
        if kind is Kind.GPU_ERROR:
            return self._break()
        if kind is Kind.GPU_SLOW:
            self.factor = 1.0 if ending else factor
            return True
        raise ValueError(f"{kind} is not a GPU fault")

    def _break(self) -> bool:
        """A device-side assert: the device is unusable from now on (True: it is)."""
        torch = self._torch()
        try:
            data = torch.zeros(1, device=self.device)
            data[torch.tensor([1 << 20], device=self.device)] = 1.0  # out of range: asserts
            torch.cuda.synchronize(self.device)
        except RuntimeError:
            return True  # the sticky error is in effect
        return False

    def after_op(self, seconds: float) -> None:
        """An op took ``seconds``: under a GPU slow, its GPU work is made ``factor`` times
        as long."""
        if self.factor > 1.0 and self.cuda:
            self._sleep((self.factor - 1.0) * seconds)
