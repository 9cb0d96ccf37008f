"""Run the harden deploy through pyinfra, after checking the inventory without contacting hosts."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bulwark.errors import BulwarkError
from bulwark.hosts import inventory as host_inventory
from bulwark.settings.endpoints import check_limit

HARDEN_DEPLOY = "bulwark.hosts.deploys.harden.harden"


@dataclass(frozen=True)
class HardenRun:
    """pyinfra's verdict: exit status, operations that changed something, its output."""

    hosts: tuple[str, ...]
    exit_status: int
    changed: int | None
    output: str
    # --dry only: the operations that would change something (pyinfra's JSON plan).
    planned: tuple[str, ...] = ()


def changed_operations(output: str) -> int | None:
    """The 'changed' count of pyinfra's Grand total row (hosts, changed, errors, no change)."""
    for line in output.splitlines():
        cells = line.split()
        if cells[:2] == ["Grand", "total"] and len(cells) >= 4:
            return 0 if cells[3] == "-" else int(cells[3])
    return None


def run_harden(
    inventory: Path,
    *,
    limit: str | None = None,
    dry: bool = False,
    diff: bool = False,
    capture: bool = False,
) -> HardenRun:
    """Preflight every host, then run the deploy; raises BulwarkError when pyinfra fails."""
    hosts = host_inventory.load(inventory, limit)
    host_inventory.preflight(hosts)
    # The inventory by absolute path and the limit attached: neither can be read as an option.
    # Host keys are always checked against the pinned ones (preflight made sure they exist).
    cmd = [sys.executable, "-m", "pyinfra", str(inventory.resolve()), HARDEN_DEPLOY]
    cmd += ["--data", "ssh_strict_host_key_checking=yes"]
    # A connection UFW's rate limit refused (right after a verify, say) is tried again once
    # the limit's 30 s window has passed; sooner tries only keep the limit on.
    cmd += ["--data", "ssh_connect_retries=2", "--data", "ssh_connect_retry_min_delay=31"]
    cmd += ["--data", "ssh_connect_retry_max_delay=35"]
    cmd += [f"--limit={pattern}" for pattern in check_limit(limit)] if limit else []
    cmd += ["--dry", "--json"] if dry else ["-y"]
    cmd += ["--diff"] if diff else []
    pipe = subprocess.PIPE if capture or dry else None
    err = None if dry else subprocess.STDOUT  # --json: the plan on stdout, progress on stderr
    done = subprocess.run(cmd, check=False, stdout=pipe, stderr=err, text=True)
    output = done.stdout or ""
    names = tuple(h.name for h in hosts)
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise BulwarkError(
            f"pyinfra failed on {', '.join(names)} (exit {done.returncode}); sshd changes that "
            "were not confirmed revert by themselves" + (f":\n{tail}" if tail else "")
        )
    if dry:
        planned = planned_changes(output)
        return HardenRun(names, done.returncode, len(planned), output, planned)
    return HardenRun(names, done.returncode, changed_operations(output), output)


def planned_changes(json_output: str) -> tuple[str, ...]:
    """Names of the operations pyinfra's dry-run plan says will change a host."""
    start = json_output.find("{")
    plan = json.loads(json_output[start:])["plan"] if start >= 0 else []
    return tuple(op["name"] for op in plan if op["hosts_with_change"])
