"""Which 127.0.0.1 ports forward to running lab VMs: a read-only lookup.

Production code may import this module (the self-target guard asks it whether a loopback port
is a lab guest) and nothing else from the lab: it reads the VMs' records and /proc, and never
starts, stops or deletes anything. A port counts only while the qemu process its record names
is alive and forwards that very port, so a stale or hand-made record proves nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from bulwark import dirs

LAB_ADDRESS = "127.0.0.1"  # where qemu's user-mode network binds every lab forward


def lab_dir() -> Path:
    return dirs.state_dir() / "lab"


def _forwarded_by(pid: int, ports: list[int]) -> set[int]:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return set()
    return {p for p in ports if f"hostfwd=tcp:{LAB_ADDRESS}:{p}-:".encode() in cmdline}


def lab_ports() -> frozenset[int]:
    """The 127.0.0.1 ports that running lab VMs forward into their guests."""
    found: set[int] = set()
    for record in lab_dir().glob("*/vm.json"):
        try:
            data = json.loads(record.read_text())
            pid = int(data["pid"])
            ports = [int(data["ssh_port"]), *(int(p) for p in data["forwards"].values())]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
        found |= _forwarded_by(pid, ports)
    return frozenset(found)
