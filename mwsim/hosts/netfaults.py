"""Network faults on a run's emulated hosts, applied in the kernel and read back.

This kernel has nftables, tc tbf/htb and NFQUEUE but no netem (``../shared/netfaults.md``
has the measurements), so each fault uses what works, and each is confirmed by reading
the kernel's state back after applying it:

- ``partition`` (drop, the default): an nft bridge table in the switch drops IPv4
  between the groups' switch ports (ARP still passes: peers see silence, not
  "no route to host"); one way: only ``from -> to``. Atomic, and healed by deleting it.
- ``partition`` (reset): in each cut host, an nft table rejects TCP to and from the
  other side with a reset (so connections die at once and connects are refused) and
  drops everything else across the cut.
- ``degrade``: loss by an nft bridge rule on the host's switch port (``numgen``: each
  packet through the link, either way, is lost with that chance); delay and jitter by
  the NFQUEUE daemon (:mod:`mwsim.hosts.delayd`) fed by iptables ``physdev`` rules in
  the switch: half of each on a packet's way in and half on its way out, so a round trip
  through the link takes ``delay_ms`` longer (as netem on one side, or a latency toxic,
  would); rate by a ``tbf`` qdisc on the switch port (into the host) and on the host's
  ``veth0`` (out of it). With loss, the link's segmentation offloads are off, so packets
  are lost one by one.
- ``power_off``: the host's switch port goes down (nothing in or out, ARP included);
  the replay then kills the host's processes, whose resets can no longer leave.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mwsim.events import AnyEvent, Degrade
from mwsim.hosts.emulated import IFNAME, Fabric


def unavailable_for(event: AnyEvent) -> str | None:
    """Why this machine cannot inject ``event`` even with emulated hosts (None: it can)."""
    delays = isinstance(event, Degrade) and (event.delay_ms or event.jitter_ms)
    if delays and importlib.util.find_spec("netfilterqueue") is None:
        return (
            "a degraded link's delay needs the NetfilterQueue package "
            "(make install, with libnetfilter-queue-dev)"
        )
    return None


@dataclass
class Applied:
    """What one fault put in place, so that it can be read back and undone."""

    tables: list[tuple[str, str]] = field(default_factory=list)  # (namespace, "family name")
    chain: str | None = None  # the iptables mangle chain of a delay
    daemon: subprocess.Popen[str] | None = None
    qdiscs: list[tuple[str, str]] = field(default_factory=list)  # (namespace, device)


class NetFaults:
    """The network faults in force on one fabric, by key (the scenario event's index)."""

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self.applied: dict[str, Applied] = {}
        self.queues = itertools.count(1)

    # -- partitions ----------------------------------------------------------------------

    def partition(
        self, key: str, sides: Sequence[Sequence[str]], *, one_way: bool, reset: bool
    ) -> bool:
        """Cut the sides from each other (``one_way``: only ``sides[0]`` to ``sides[1]``);
        True when the rules read back as asked."""
        f, applied = self.fabric, Applied()
        self.applied[key] = applied
        table = f"mwsim_{key}"
        pairs = [(0, 1)] if one_way else list(itertools.permutations(range(len(sides)), 2))
        if not reset:
            sets = ""
            for i, side in enumerate(sides):
                ports = ", ".join(f'"{f.ports[h]}"' for h in side)
                sets += f"  set g{i} {{ type ifname; elements = {{ {ports} }} }}\n"
            rules = "".join(
                f"    iifname @g{a} oifname @g{b} ether type ip drop\n" for a, b in pairs
            )
            f.nft(
                f.switch,
                f"table bridge {table} {{\n{sets}  chain cut {{ type filter hook forward "
                f"priority -10; policy accept;\n{rules}  }}\n}}\n",
            )
            applied.tables.append((f.switch, f"bridge {table}"))
        else:
            for a, b in pairs:  # the receiving side rejects what comes across
                for host in sides[b]:
                    peers = [f.address(h) for h in sides[a]]
                    self._reject(host, table, peers, both_ways=not one_way)
                    applied.tables.append((f.names[host], f"inet {table}"))
        return self._present(applied)

    def _reject(self, host: str, table: str, peers: list[str], both_ways: bool) -> None:
        f = self.fabric
        elements = ", ".join(peers)
        # resets themselves pass (the local one comes in on lo with the peer's address)
        tcp = "meta l4proto tcp tcp flags & rst == 0 reject with tcp reset"
        out = ""
        if both_ways:
            out = (
                "  chain out { type filter hook output priority -10; policy accept;\n"
                f'    oifname != "lo" ip daddr @peers {tcp}\n'
                '    oifname != "lo" ip daddr @peers meta l4proto != tcp drop\n  }\n'
            )
        script = (
            f"table inet {table} {{\n"
            f"  set peers {{ type ipv4_addr; elements = {{ {elements} }} }}\n"
            "  chain in { type filter hook input priority -10; policy accept;\n"
            f'    iifname != "lo" ip saddr @peers {tcp}\n'
            '    iifname != "lo" ip saddr @peers meta l4proto != tcp drop\n  }\n'
            f"{out}}}\n"
        )
        with contextlib.suppress(RuntimeError):  # a host on both receiving ends: one table
            f.nft(f.names[host], f"delete table inet {table}\n")
        f.nft(f.names[host], script)

    # -- degraded links ------------------------------------------------------------------

    def degrade(
        self,
        key: str,
        host: str,
        *,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss_pct: float = 0.0,
        rate_mbit: float = 0.0,
    ) -> bool:
        """Degrade ``host``'s link, both directions; True when it reads back as asked."""
        f, applied = self.fabric, Applied()
        self.applied[key] = applied
        port, table = f.ports[host], f"mwsim_{key}"
        if loss_pct:
            for namespace, device in ((f.names[host], IFNAME), (f.switch, port)):
                f.in_ns(namespace, ["ethtool", "-K", device, "tso", "off", "gso", "off"])
            per_10k = round(loss_pct * 100)
            f.nft(
                f.switch,
                f"table bridge {table} {{\n  chain loss {{ type filter hook forward "
                "priority -5; policy accept;\n"
                f'    iifname "{port}" ether type ip numgen random mod 10000 < {per_10k} drop\n'
                f'    oifname "{port}" ether type ip numgen random mod 10000 < {per_10k} drop\n'
                "  }\n}\n",
            )
            applied.tables.append((f.switch, f"bridge {table}"))
        if delay_ms or jitter_ms:
            queue = next(self.queues)
            applied.daemon = self._daemon(queue, delay_ms / 2, jitter_ms / 2)  # each way
            applied.chain = f"MWSIM_{key.upper()}"
            f.in_ns(f.switch, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
            target = ["-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]
            ipt = ["iptables", "-w", "-t", "mangle"]
            f.in_ns(f.switch, [*ipt, "-N", applied.chain])
            for side in ("--physdev-in", "--physdev-out"):
                f.in_ns(f.switch, [*ipt, "-A", applied.chain, "-m", "physdev", side, port, *target])
            f.in_ns(f.switch, [*ipt, "-A", "FORWARD", "-j", applied.chain])
        if rate_mbit:
            burst = max(32_768, int(rate_mbit * 1e6 / 8 / 100))  # 10 ms at the rate
            shape = ["rate", f"{rate_mbit}mbit", "burst", str(burst), "latency", "100ms"]
            for namespace, device in ((f.switch, port), (f.names[host], IFNAME)):
                f.in_ns(namespace, ["tc", "qdisc", "replace", "dev", device, "root", "tbf", *shape])
                applied.qdiscs.append((namespace, device))
        return self._present(applied)

    def _daemon(self, queue: int, delay_ms: float, jitter_ms: float) -> subprocess.Popen[str]:
        f = self.fabric
        # run as a script: importing the mwsim package would add a second to its start
        command = [sys.executable, str(Path(__file__).with_name("delayd.py")), str(queue)]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", f.switch, *command, str(delay_ms), str(jitter_ms)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        f.helpers.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready" once bound (EOF if it failed)
        if line.strip() != "ready":
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"the delay daemon did not start: {err.strip()[-300:]}")
        return proc

    # -- power -----------------------------------------------------------------------------

    def power_off(self, host: str) -> bool:
        """Take the host's link down for good; True when the switch shows it down."""
        f = self.fabric
        f.ip(f.switch, [f"link set {f.ports[host]} down"])
        return f.link_state(f.switch, f.ports[host]) == "DOWN"

    # -- undoing and reading back ----------------------------------------------------------

    def undo(self, key: str) -> bool:
        """Heal a partition or repair a link; True when nothing of it reads back."""
        f, applied = self.fabric, self.applied.pop(key)
        for namespace, name in applied.tables:
            with contextlib.suppress(RuntimeError):  # a shared reset table went already
                f.nft(namespace, f"delete table {name}\n")
        if applied.chain is not None:
            ipt = ["iptables", "-w", "-t", "mangle"]
            f.in_ns(f.switch, [*ipt, "-D", "FORWARD", "-j", applied.chain])
            f.in_ns(f.switch, [*ipt, "-F", applied.chain])
            f.in_ns(f.switch, [*ipt, "-X", applied.chain])
        if applied.daemon is not None:
            applied.daemon.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                applied.daemon.wait(timeout=5)
        for namespace, device in applied.qdiscs:
            f.in_ns(namespace, ["tc", "qdisc", "del", "dev", device, "root"])
        return not self._any_present(applied)

    def clear(self) -> list[str]:
        """Undo every fault still in force (on a fabric that outlives the run); the keys
        of those that would not go."""
        left = []
        for key in list(self.applied):
            try:
                gone = self.undo(key)
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                gone = False
            if not gone:
                left.append(key)
        return left

    def _tables_present(self, applied: Applied) -> list[bool]:
        by_ns: dict[str, dict[str, object]] = {}
        out = []
        for namespace, name in applied.tables:
            if namespace not in by_ns:
                by_ns[namespace] = dict(self.fabric.nft_tables(namespace))
            out.append(name in by_ns[namespace])
        return out

    def _qdiscs_present(self, applied: Applied) -> list[bool]:
        f = self.fabric
        return [
            "tbf" in f.in_ns(namespace, ["tc", "qdisc", "show", "dev", device])
            for namespace, device in applied.qdiscs
        ]

    def _chain_present(self, applied: Applied) -> bool:
        if applied.chain is None:
            return False
        rules = self.fabric.in_ns(self.fabric.switch, ["iptables", "-w", "-t", "mangle", "-S"])
        return f"-A FORWARD -j {applied.chain}" in rules

    def _present(self, applied: Applied) -> bool:
        """Everything the fault put in place reads back (and its daemon is alive)."""
        checks = self._tables_present(applied) + self._qdiscs_present(applied)
        if applied.chain is not None:
            checks.append(self._chain_present(applied))
        if applied.daemon is not None:
            checks.append(applied.daemon.poll() is None)
        return bool(checks) and all(checks)

    def _any_present(self, applied: Applied) -> bool:
        checks = self._tables_present(applied) + self._qdiscs_present(applied)
        checks.append(self._chain_present(applied))
        if applied.daemon is not None:
            checks.append(applied.daemon.poll() is None)
        return any(checks)
