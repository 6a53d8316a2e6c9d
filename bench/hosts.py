"""Emulated hosts: what setting them up costs, and how accurate each degraded-link knob is.

    python bench/hosts.py [--hosts 16] [--repeat 5]

setup      16 emulated hosts made and removed (namespaces, links, bridge, addresses),
           repeated; goal: <= 0.5 s together
accuracy   on a 2-host fabric, each knob measured against the same link undegraded, side
           by side: delay (TCP ping-pong round trip), jitter (its spread), loss (UDP
           datagrams that do not arrive), rate (TCP bulk throughput)

Needs root (network namespaces). Prints one JSON line per benchmark.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mwsim.hosts import Emulated
from mwsim.hosts.emulated import in_namespace, unavailable
from mwsim.hosts.netfaults import NetFaults


def bench_setup(hosts: int, repeat: int) -> dict:
    ups, downs = [], []
    for _ in range(repeat):
        fabric = Emulated([f"h{i}" for i in range(hosts)])
        start = time.perf_counter()
        fabric.up()
        ups.append(time.perf_counter() - start)
        start = time.perf_counter()
        left = fabric.down()
        downs.append(time.perf_counter() - start)
        assert not left, left
    up, down = statistics.median(ups), statistics.median(downs)
    return {
        "hosts": hosts,
        "setup_s": round(up, 3),
        "teardown_s": round(down, 3),
        "together_s": round(up + down, 3),
        "goal": "<= 0.5 s together",
        "samples": {"setup": ups, "teardown": downs},
    }


def _pair(fabric: Emulated) -> tuple[socket.socket, socket.socket]:
    server = in_namespace(fabric.netns("h0"), lambda: socket.create_server(("198.18.0.1", 0)))
    port = server.getsockname()[1]
    client = in_namespace(
        fabric.netns("h1"), lambda: socket.create_connection(("198.18.0.1", port), timeout=5)
    )
    conn, _ = server.accept()
    server.close()
    for sock in (client, conn):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
    return client, conn


def _rtts(client: socket.socket, conn: socket.socket, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.sendall(b"x")
        conn.recv(1)
        conn.sendall(b"y")
        client.recv(1)
        out.append(time.perf_counter() - start)
    return out


def _lost(fabric: Emulated, n: int) -> float:
    """Share of UDP datagrams from h1 to h0 that never arrive (read as they come)."""
    receiver = in_namespace(
        fabric.netns("h0"), lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    )
    receiver.bind(("198.18.0.1", 0))
    receiver.settimeout(1.0)
    sender = in_namespace(
        fabric.netns("h1"), lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    )
    got = [0]

    def drain() -> None:
        try:
            while got[0] < n:
                receiver.recv(16)
                got[0] += 1
        except TimeoutError:
            pass

    reader = threading.Thread(target=drain)
    reader.start()
    for i in range(n):
        sender.sendto(i.to_bytes(4, "big"), receiver.getsockname())
        if i % 20 == 19:
            time.sleep(0.001)  # stay far below any queue limit
    reader.join()
    sender.close()
    receiver.close()
    return 1 - got[0] / n


def _throughput(client: socket.socket, conn: socket.socket, seconds: float) -> float:
    """Mbit/s from h1 to h0 over one TCP stream."""
    chunk = b"\0" * 65536
    sent, end = 0, time.perf_counter() + seconds
    conn.setblocking(False)
    while time.perf_counter() < end:
        sent += client.send(chunk)
        try:
            while conn.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
    conn.setblocking(True)
    return sent * 8 / seconds / 1e6


def bench_accuracy(repeat: int) -> dict:
    fabric = Emulated(["h0", "h1"])
    fabric.up()
    faults = NetFaults(fabric)
    try:
        client, conn = _pair(fabric)
        base = statistics.median(_rtts(client, conn, 200))
        out: dict = {"base_rtt_ms": round(1000 * base, 3)}
        assert faults.degrade("d", "h1", delay_ms=50)
        rtts = _rtts(client, conn, 20 * repeat)
        faults.undo("d")
        out["delay_50ms"] = {"rtt_added_ms": round(1000 * (statistics.median(rtts) - base), 2)}
        assert faults.degrade("j", "h1", delay_ms=50, jitter_ms=20)
        rtts = _rtts(client, conn, 40 * repeat)
        faults.undo("j")
        out["jitter_20ms"] = {
            "rtt_added_ms": round(1000 * (statistics.median(rtts) - base), 2),
            "spread_ms": [round(1000 * (min(rtts) - base), 1), round(1000 * (max(rtts) - base), 1)],
            "stdev_ms": round(1000 * statistics.stdev(rtts), 2),
        }
        clean = _lost(fabric, 2000)
        assert faults.degrade("l", "h1", loss_pct=10)
        lost = [_lost(fabric, 2000) for _ in range(repeat)]
        faults.undo("l")
        out["loss_10pct"] = {"lost_pct": round(100 * statistics.median(lost), 2), "clean": clean}
        free = _throughput(client, conn, 1.0)
        assert faults.degrade("r", "h1", rate_mbit=100)
        rates = [_throughput(client, conn, 1.5) for _ in range(repeat)]
        faults.undo("r")
        out["rate_100mbit"] = {
            "measured_mbit": round(statistics.median(rates), 1),
            "undegraded_mbit": round(free, 1),
        }
        client.close()
        conn.close()
        return out
    finally:
        fabric.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        raise SystemExit(f"bench/hosts.py: {reason}")
    setup = bench_setup(args.hosts, args.repeat)
    print("setup", json.dumps({k: v for k, v in setup.items() if k != "samples"}))
    print("accuracy", json.dumps(bench_accuracy(args.repeat)))


if __name__ == "__main__":
    main()
