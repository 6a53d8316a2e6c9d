"""The baseline of the overhead benchmark: the stream loop written directly against
MultiWorld, no harness. ``python bench/direct_loop.py SECONDS TENSOR_BYTES`` prints ops/s."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def worker(rank: int, port: int, seconds: float, numel: int, start_at: float) -> None:
    import torch
    from multiworld.manager import WorldManager

    manager = WorldManager()
    await manager.initialize_world("w", rank, 2, backend="gloo", addr="127.0.0.1", port=port)
    comm = manager.communicator
    tensor = torch.zeros(numel, dtype=torch.int64)
    while time.monotonic() < start_at:
        await asyncio.sleep(0.001)
    end, ops = start_at + seconds, 0
    if rank == 0:  # count what arrives before the end, until the sender says stop (-1)
        while True:
            await comm.recv(tensor, 1, "w")
            if int(tensor[0]) < 0:
                break
            ops += time.monotonic() < end
    else:
        while time.monotonic() < end:
            tensor[0] = ops
            await comm.send(tensor, 0, "w")
            ops += 1
        tensor[0] = -1
        await comm.send(tensor, 0, "w")
    print(json.dumps({"rank": rank, "ops": ops}), flush=True)
    os._exit(0)


def main() -> None:
    if len(sys.argv) == 6:  # a worker
        rank, port, seconds, numel, start_at = sys.argv[1:]
        asyncio.run(worker(int(rank), int(port), float(seconds), int(numel), float(start_at)))
    seconds, tensor_bytes = float(sys.argv[1]), int(sys.argv[2])
    port, start_at = free_port(), time.monotonic() + 8.0
    args = [str(port), str(seconds), str(tensor_bytes // 8), str(start_at)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(r), *args], stdout=subprocess.PIPE, text=True
        )
        for r in (0, 1)
    ]
    results = [
        json.loads(p.communicate(timeout=seconds + 120)[0].strip().splitlines()[-1]) for p in procs
    ]
    received = next(r["ops"] for r in results if r["rank"] == 0)
    print(json.dumps({"ops_per_s": received / seconds}))


if __name__ == "__main__":
    main()
