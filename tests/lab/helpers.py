"""Shared by the hardening lab tests: inventories for lab VMs and running `bulwark harden`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bulwark.hosts.harden import changed_operations
from bulwark.hosts.keys import KeyPair
from bulwark.lab.inventory import host_data, write_inventory
from bulwark.lab.vm import LabVM


def inventory(vm: LabVM, operator: KeyPair, settings: dict[str, Any]) -> Path:
    data = host_data(vm, user="deploy", key=operator.path, bulwark=settings)
    return write_inventory(vm.directory / "inventory.py", {"lab": data})


def harden(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`bulwark harden` as an operator runs it (the installed console script)."""
    exe = Path(sys.executable).with_name("bulwark")
    return subprocess.run(
        [str(exe), "harden", str(inv), *args],
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )


def changed_ops(output: str) -> int:
    changed = changed_operations(output)
    assert changed is not None, f"no results table in pyinfra's output:\n{output[-2000:]}"
    return changed


def ssh_audit(port: int, policy: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ssh_audit", "-P", policy, "-p", str(port), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
