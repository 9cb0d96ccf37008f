"""pyinfra inventories for lab VMs, as an operator would write one for a real host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bulwark.lab.vm import LabVM


def host_data(
    vm: LabVM, *, user: str, key: Path, bulwark: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Connection data for one lab VM: its forwarded SSH port, pinned host keys, sudo."""
    return {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": vm.ssh_port,
        "ssh_user": user,
        "ssh_key": str(key),
        "ssh_known_hosts_file": str(vm.known_hosts),
        "ssh_strict_host_key_checking": "yes",
        "_sudo": True,
        "bulwark_forwarded_ports": {22: vm.ssh_port, **vm.forwards},
        "bulwark": bulwark or {},
    }


def write_inventory(path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    """Write a pyinfra inventory file holding `hosts` (name -> data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    items = ",\n".join(
        f"    ({name!r}, json.loads({json.dumps(json.dumps(data))}))"
        for name, data in hosts.items()
    )
    path.write_text(
        '"""pyinfra inventory written by bulwark for lab VMs."""\n\nimport json\n\n'
        f"lab = [\n{items},\n]\n"
    )
    return path
