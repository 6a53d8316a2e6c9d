"""The baseline of the serving benchmark: the serve workload's fan-in loop written
directly on MultiWorld, no harness: a leader with one world per replica, each world a
lane of round trips (a request out, the replica adds one, the answer back), as fast as
they go. ``python bench/direct_serve.py SECONDS REPLICAS REQUEST_BYTES`` prints answers/s.

Run with the agents' process settings (``THREAD_LIMITS`` from the caller's environment),
so the figure compares loops, not thread pools."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

HEADER = 13  # the serve workload's header (mwsim.serve.HEADER)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def leader(ports: list[int], seconds: float, numel: int, start_at: float) -> None:
    import torch
    from multiworld.manager import WorldManager

    manager = WorldManager()
    for i, port in enumerate(ports):
        await manager.initialize_world(f"w{i}", 0, 2, backend="gloo", addr="127.0.0.1", port=port)
    comm = manager.communicator
    while time.monotonic() < start_at:
        await asyncio.sleep(0.001)
    end = start_at + seconds
    answered = [0] * len(ports)

    async def lane(i: int) -> None:
        request = torch.zeros(numel, dtype=torch.float64)
        answer = torch.zeros(numel, dtype=torch.float64)
        while time.monotonic() < end:
            request[0] = answered[i]
            await comm.send(request, 1, f"w{i}")
            await comm.recv(answer, 1, f"w{i}")
            answered[i] += 1
        request[0] = -1
        await comm.send(request, 1, f"w{i}")

    await asyncio.gather(*(lane(i) for i in range(len(ports))))
    print(json.dumps({"answered": sum(answered)}), flush=True)
    os._exit(0)


async def replica(i: int, port: int, numel: int) -> None:
    import torch
    from multiworld.manager import WorldManager

    manager = WorldManager()
    await manager.initialize_world(f"w{i}", 1, 2, backend="gloo", addr="127.0.0.1", port=port)
    comm = manager.communicator
    buf = torch.zeros(numel, dtype=torch.float64)
    while True:
        await comm.recv(buf, 0, f"w{i}")
        if float(buf[0]) < 0:
            break
        buf[HEADER:] += 1
        await comm.send(buf, 0, f"w{i}")
    os._exit(0)


def main() -> None:
    if sys.argv[1] == "leader":
        _, _, ports, seconds, numel, start_at = sys.argv
        asyncio.run(
            leader([int(p) for p in ports.split(",")], float(seconds), int(numel), float(start_at))
        )
    if sys.argv[1] == "replica":
        _, _, i, port, numel = sys.argv
        asyncio.run(replica(int(i), int(port), int(numel)))
    seconds, replicas, request_bytes = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    numel = max(HEADER + 1, request_bytes // 8)
    ports = [free_port() for _ in range(replicas)]
    start_at = time.monotonic() + 10.0
    me = [sys.executable, __file__]
    procs = [
        subprocess.Popen(
            [*me, "leader", ",".join(map(str, ports)), str(seconds), str(numel), str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
        )
    ]
    procs += [
        subprocess.Popen([*me, "replica", str(i), str(port), str(numel)])
        for i, port in enumerate(ports)
    ]
    out = procs[0].communicate(timeout=seconds + 120)[0]
    for p in procs[1:]:
        p.wait(timeout=30)
    answered = json.loads(out.strip().splitlines()[-1])["answered"]
    print(json.dumps({"answers_per_s": answered / seconds}))


if __name__ == "__main__":
    main()
