"""Every op MultiWorld has, through its own communicator, on the torch of the interpreter
that runs this: its own patch on torch 2.4.0, mwsim's worlds layer elsewhere.

Run by ``test_worlds_layer_real.py`` in both environments: three processes form one world on loopback with MultiWorld's
``WorldManager`` and run send/recv, broadcast, all_reduce, reduce, all_gather, gather and
scatter; each reports what it got, and the parent prints one JSON line of the results.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import socket
import sys
from typing import Any

SIZE = 3


def member(rank: int, port: int, conn: Any) -> None:
    from mwsim.runtimes.multiworld import MultiWorldRuntime

    MultiWorldRuntime.prepare()  # the worlds layer where torch has no MultiWorld patch
    import torch
    from multiworld.manager import WorldManager

    async def main() -> None:
        manager = WorldManager()
        await manager.initialize_world("w", rank, SIZE, backend="gloo", addr="127.0.0.1", port=port)
        comm = manager.communicator
        got: dict[str, Any] = {}
        t = torch.zeros(3)
        if rank == 0:
            await comm.send(torch.tensor([1.0, 2.0, 3.0]), 1, "w")
        elif rank == 1:
            await comm.recv(t, 0, "w")
            got["recv"] = t.tolist()
        b = torch.full((2,), float(rank))
        await comm.broadcast(b, 1, "w")
        got["broadcast"] = b.tolist()
        a = torch.full((2,), float(rank + 1))
        await comm.all_reduce(a, world_name="w")
        got["all_reduce"] = a.tolist()
        r = torch.full((1,), float(rank + 1))
        await comm.reduce(r, 2, world_name="w")
        if rank == 2:
            got["reduce"] = r.tolist()
        out = [torch.zeros(1) for _ in range(SIZE)]
        await comm.all_gather(out, torch.full((1,), float(rank)), "w")
        got["all_gather"] = [x.item() for x in out]
        gathered = [torch.zeros(1) for _ in range(SIZE)] if rank == 0 else None
        await comm.gather(torch.full((1,), float(rank * 2)), gathered, 0, "w")
        if rank == 0:
            got["gather"] = [x.item() for x in gathered or []]
        s = torch.zeros(1)
        parts = [torch.full((1,), float(i * 10)) for i in range(SIZE)] if rank == 2 else None
        await comm.scatter(s, parts, 2, "w")
        got["scatter"] = s.item()
        got["broken"] = comm.is_broken("w")
        conn.send((rank, got))
        conn.close()
        manager.cleanup()  # ends the process, as MultiWorld's own programs do

    asyncio.run(main())


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    pipes = [context.Pipe(duplex=False) for _ in range(SIZE)]
    procs = [
        context.Process(target=member, args=(rank, port, pipes[rank][1])) for rank in range(SIZE)
    ]
    for proc in procs:
        proc.start()
    results = {}
    for rank, (reader, _) in enumerate(pipes):
        if not reader.poll(60):
            break
        results[rank] = reader.recv()[1]
    for proc in procs:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    json.dump({"results": results, "codes": [p.exitcode for p in procs]}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
