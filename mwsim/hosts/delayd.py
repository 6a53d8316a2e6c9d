"""The delay daemon of a degraded link: holds each queued packet for its delay, then lets
it go (``python mwsim/hosts/delayd.py QUEUE DELAY_MS JITTER_MS``, inside a run's switch; run
as a script, it imports nothing of mwsim, so it is up in a tenth of a second).

This kernel has no netem qdisc, so a degraded link's delay is done in user space: the
switch's iptables send the link's packets (both directions) to an NFQUEUE, and this
daemon accepts each one ``delay ± jitter`` milliseconds (uniform, never negative) after
it arrived. The rules use ``--queue-bypass``: if the daemon dies, packets flow undelayed
rather than being lost. It prints ``ready`` once bound and ends on SIGTERM (also when
its controller dies), letting every held packet go.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import random
import select
import signal
import socket
import sys
import time
from typing import Any


def serve(queue: int, delay_s: float, jitter_s: float) -> None:
    from netfilterqueue import NetfilterQueue

    held: list[tuple[float, int, Any]] = []
    order = itertools.count()
    rng = random.Random()

    def hold(packet: Any) -> None:
        wait = delay_s + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0)
        heapq.heappush(held, (time.monotonic() + max(0.0, wait), next(order), packet))

    nfq = NetfilterQueue()
    nfq.bind(queue, hold, max_len=65536)  # verdicts may come after the callback returns
    sock = socket.fromfd(nfq.get_fd(), socket.AF_NETLINK, socket.SOCK_RAW)
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    print("ready", flush=True)
    try:
        while running[0]:
            now = time.monotonic()
            while held and held[0][0] <= now:
                heapq.heappop(held)[2].accept()
            timeout = max(0.0, held[0][0] - now) if held else 0.2
            ready, _, _ = select.select([sock], [], [], timeout)
            if ready:
                nfq.run(block=False)
    finally:
        for *_, packet in held:
            packet.accept()
        nfq.unbind()


PR_SET_PDEATHSIG = 1


def main() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    queue, delay_ms, jitter_ms = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    serve(queue, delay_ms / 1000, jitter_ms / 1000)


if __name__ == "__main__":
    main()
