"""Kernel-level faults with nftables (root only): UDP loss on the receiver's input, TCP partitions (drop or reset).

Each process owns one table, ``inet tradedrill_<pid>``; each fault is one base chain in it on the input hook
(on loopback every packet passes input once, so one rule per direction is enough). Heal deletes the chain; the
table is deleted when this process's last kernel fault heals and at exit. ``tradedrill faults heal-all``
deletes the tables of processes that are gone (``--force``: every ``tradedrill*`` table).

Measured here: no netem; ``numgen random mod 100 < N drop`` on the receiver's input hook drops N % (on the
sender's output, sendto raises EPERM instead). The kernel's random numbers cannot be seeded: the loss *rate* is
the setting, the sequence is not replayable (use the proxy's UDP loss when the sequence must replay).
Every address is checked against loopback and the run's networks (faults/safety.py).
"""
from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import subprocess
import threading
from typing import Callable, Iterable, Sequence

from faults.core import Fault, FaultError, FaultState
from faults.safety import check_address

TABLE_PREFIX = "tradedrill"
_chain_ids = itertools.count(1)
_lock = threading.Lock()
_live_chains: set[str] = set()


def kernel_faults_available() -> str | None:
    """None if kernel faults can run here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "kernel faults need root (nftables); run as root or use the proxy's faults"
    if shutil.which("nft") is None:
        return "kernel faults need the nft command (apt-get install nftables)"
    return None


def table_name(pid: int | None = None) -> str:
    return f"{TABLE_PREFIX}_{pid or os.getpid()}"


def nft(script: str, timeout: float = 10.0, netns_pid: int | None = None) -> str:
    """Run an nft script in this network namespace, or in that of process ``netns_pid`` (a container's init,
    entered from the host with nsenter: the docker provider's nodes each have their own)."""
    argv = ["nft", "-f", "-"] if netns_pid is None else ["nsenter", "-t", str(netns_pid), "-n", "nft", "-f", "-"]
    proc = subprocess.run(argv, input=script, text=True, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise FaultError(f"nft refused the rules ({proc.stderr.strip()}); script was:\n{script}")
    return proc.stdout


def list_tables() -> list[str]:
    proc = subprocess.run(["nft", "list", "tables"], text=True, capture_output=True, timeout=10)
    return re.findall(rf"^table inet ({TABLE_PREFIX}\w*)$", proc.stdout, re.M)


def delete_table(name: str) -> bool:
    proc = subprocess.run(["nft", "delete", "table", "inet", name], text=True, capture_output=True, timeout=10)
    return proc.returncode == 0


def _family(addr: str) -> str:
    return "ip6" if ipaddress.ip_network(addr, strict=False).version == 6 else "ip"


def _set(addrs: Sequence[str]) -> str:
    return addrs[0] if len(addrs) == 1 else "{ " + ", ".join(addrs) + " }"


def _by_family(addrs: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in addrs:
        out.setdefault(_family(a), []).append(a)
    return out


# the RSTs our own reject sends cross the partition too (on loopback they pass the input hook): let them through
RESET_VERDICTS = ["tcp flags & rst == rst accept", "meta l4proto tcp reject with tcp reset", "drop"]


class NftFault(Fault):
    """A fault made of nftables rules in a chain of its own; subclasses return the rules from ``rules()``."""

    name = "kernel-rules"
    priority = -5

    def __init__(self, *, allowed_networks: Iterable[str] | None = None, **kw):
        super().__init__(**kw)
        self.allowed = list(allowed_networks or [])
        self.table = table_name()
        self.chain = f"f{os.getpid()}_{next(_chain_ids)}"
        self.state = self.state or FaultState()
        # where the rules go: this namespace (None), or every network namespace of these PIDs, asked at inject time
        # (the docker provider sets it: one namespace per container, each filters its own input)
        self.netns_pids: Callable[[], list[int]] | None = None
        self._placed: list[int] = []

    def rules(self) -> list[str]:
        raise NotImplementedError

    def check(self, addrs: Iterable[str]) -> list[str]:
        return [check_address(a, self.allowed) for a in addrs]

    def _inject(self) -> None:
        reason = kernel_faults_available()
        if reason:
            raise FaultError(reason)
        rules = self.rules()
        script = [f"add table inet {self.table}",
                  f"add chain inet {self.table} {self.chain} "
                  f"{{ type filter hook input priority {self.priority}; policy accept; }}"]
        script += [f"add rule inet {self.table} {self.chain} {rule}" for rule in rules]
        if self.netns_pids is not None:
            self._placed = []
            for pid in self.netns_pids():
                nft("\n".join(script) + "\n", netns_pid=pid)
                self._placed.append(pid)
            return
        with _lock:
            self.state.add("nft_tables", {"table": self.table, "pid": os.getpid()})
            nft("\n".join(script) + "\n")
            _live_chains.add(self.chain)

    def _heal(self) -> None:
        if self.netns_pids is not None:
            for pid in self._placed:   # a namespace that is gone (its container stopped) took its rules along
                subprocess.run(["nsenter", "-t", str(pid), "-n", "nft", "delete", "chain", "inet", self.table,
                                self.chain], text=True, capture_output=True, timeout=10)
            self._placed = []
            return
        with _lock:
            _live_chains.discard(self.chain)
            if _live_chains:
                proc = subprocess.run(["nft", "delete", "chain", "inet", self.table, self.chain],
                                      text=True, capture_output=True, timeout=10)
                if proc.returncode != 0 and "No such file" not in proc.stderr:
                    raise FaultError(f"nft could not delete chain {self.chain}: {proc.stderr.strip()}")
            else:
                delete_table(self.table)
                self.state.remove("nft_tables", {"table": self.table, "pid": os.getpid()})

    def details(self) -> dict:
        return {"table": self.table, "chain": self.chain, "rules": self.rules()}


class UdpLossKernel(NftFault):
    """Drop ``percent`` % of UDP datagrams arriving at ``address`` (optionally one ``port``), on the receiver's
    input hook."""

    name = "kernel-udp-loss"
    requirement_ids = ("EA-2",)

    def __init__(self, address: str, percent: int, port: int | None = None, **kw):
        super().__init__(**kw)
        if not 0 <= int(percent) <= 100:
            raise FaultError("UDP loss percent must be between 0 and 100")
        self.address = self.check([address])[0]
        self.percent = int(percent)
        self.port = port

    def rules(self) -> list[str]:
        fam = _family(self.address)
        port = f" udp dport {self.port}" if self.port else " meta l4proto udp"
        # nft refuses "< 100" for a mod-100 value (range 0-99): 100 % is a plain drop (a UDP blackhole)
        loss = "" if self.percent >= 100 else f" numgen random mod 100 < {self.percent}"
        return [f"{fam} daddr {self.address}{port}{loss} drop"]

    def describe(self) -> str:
        return f"kernel UDP loss {self.percent}% to {self.address}" + (f":{self.port}" if self.port else "")


class Partition(NftFault):
    """No packet passes between any two groups of addresses (Jepsen's partition as a grudge). ``mode="drop"``
    makes peers time out; ``mode="reset"`` answers TCP with an RST (clients see a refused/reset connection
    at once) and drops everything else."""

    name = "kernel-partition"
    requirement_ids = ("RDS-2", "RDS-4")

    def __init__(self, groups: Sequence[Iterable[str]], mode: str = "drop", description: str | None = None, **kw):
        super().__init__(**kw)
        if mode not in ("drop", "reset"):
            raise FaultError("partition mode is drop or reset")
        self.groups = [self.check(g) for g in groups]
        if len([g for g in self.groups if g]) < 2:
            raise FaultError("a partition needs at least two non-empty groups of addresses")
        self.mode = mode
        self._description = description

    def _verdicts(self) -> list[str]:
        return RESET_VERDICTS if self.mode == "reset" else ["drop"]

    def rules(self) -> list[str]:
        rules = []
        for i, a in enumerate(self.groups):
            for j, b in enumerate(self.groups):
                if i == j:
                    continue
                fa, fb = _by_family(a), _by_family(b)
                for fam in fa.keys() & fb.keys():
                    for verdict in self._verdicts():
                        rules.append(f"{fam} saddr {_set(fa[fam])} {fam} daddr {_set(fb[fam])} {verdict}")
        return rules

    def describe(self) -> str:
        if self._description:
            return self._description
        return f"partition ({self.mode}) " + " | ".join(",".join(g) for g in self.groups)

    def details(self) -> dict:
        return {**super().details(), "groups": self.groups, "mode": self.mode}


class Isolate(NftFault):
    """Cut ``address`` from every other address (its own loopback traffic excepted): Jepsen's isolated node.
    Clients on 127.0.0.1 (the default source on loopback) are cut off too."""

    name = "kernel-isolate"
    requirement_ids = ("RDS-2",)

    def __init__(self, address: str, mode: str = "drop", port: int | None = None, description: str | None = None,
                 **kw):
        super().__init__(**kw)
        self.address = self.check([address])[0]
        self.mode = mode
        self.port = port
        self._description = description

    def rules(self) -> list[str]:
        fam = _family(self.address)
        a = self.address
        verdicts = RESET_VERDICTS if self.mode == "reset" else ["drop"]
        rules = []
        for v in verdicts:
            rules.append(f"{fam} saddr != {a} {fam} daddr {a} {v}")
            rules.append(f"{fam} saddr {a} {fam} daddr != {a} {v}")
        return rules

    def describe(self) -> str:
        return self._description or f"isolate {self.address} ({self.mode})"


def heal_leftovers(state: FaultState, force: bool = False) -> list[str]:
    """Delete the nftables tables of processes that are gone (every tradedrill table with ``force``)."""
    import psutil

    done = []
    if kernel_faults_available():
        return done
    for name in list_tables():
        m = re.fullmatch(rf"{TABLE_PREFIX}_(\d+)", name)
        pid = int(m.group(1)) if m else None
        if not force and pid is not None and psutil.pid_exists(pid) and pid != os.getpid():
            done.append(f"kept nft table {name}: process {pid} is still running (use --force)")
            continue
        if delete_table(name):
            done.append(f"deleted nft table inet {name}")
    for rec in state.entries().get("nft_tables", []):
        if force or not psutil.pid_exists(rec.get("pid", 0)):
            state.remove("nft_tables", rec)
    return done
