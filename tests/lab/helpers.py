"""Shared by the hardening lab tests: inventories for lab VMs and running `bulwark harden`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ssh_audit.builtin_policies import BUILTIN_POLICIES  # type: ignore[import-untyped]

from bulwark.hosts.bootstrap import TrustStore
from bulwark.hosts.keys import KeyPair
from bulwark.hosts.operations import READ_AGAIN
from bulwark.hosts.ssh import connect
from bulwark.lab.inventory import host_data, write_inventory
from bulwark.lab.vm import LabVM
from tests.schemas import check


def inventory(vm: LabVM, operator: KeyPair, settings: dict[str, Any]) -> Path:
    data = host_data(vm, user="deploy", key=operator.path, bulwark=settings)
    return write_inventory(vm.directory / "inventory.py", {"lab": data})


def harden(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`bulwark harden` as CI runs it (the installed console script, --yes, the JSON summary)."""
    exe = Path(sys.executable).with_name("bulwark")
    return subprocess.run(
        [str(exe), "harden", str(inv), "--yes", "--json", *args],
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )


def changed_ops(output: str) -> int:
    """The changed operations of `bulwark harden --json`'s summary (would change, with --dry)."""
    try:
        summary = json.loads(output)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON summary from bulwark harden:\n{output[-2000:]}") from None
    check("harden", summary)
    return int(summary["changed"])


def read_alone(output: str) -> list[str]:
    """The facts a `bulwark harden --json` run read on their own, not in harden's one read
    ahead of the operations (its log's READ_AGAIN lines): none on a converged host."""
    log = Path(json.loads(output)["log"]).read_text(encoding="utf-8")
    return [line for line in log.splitlines() if READ_AGAIN in line]


def ssh_audit(port: int, policy: str) -> subprocess.CompletedProcess[str]:
    """Audit sshd on a forwarded lab port against one of ssh-audit's built-in policies, or a
    policy file."""
    return subprocess.run(
        [sys.executable, "-m", "ssh_audit", "-P", policy, "-p", str(port), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def policy_with_extra_kex(builtin: str, kex: str, path: Path) -> Path:
    """ssh-audit's built-in `builtin` policy with one more key exchange appended, as a policy
    file: the one documented deviation (see bulwark/hosts/sshcrypto.py, PARAMIKO_KEX)."""
    base = BUILTIN_POLICIES[builtin]
    pq = [k for k in base["kex"] if k not in ("ext-info-s", "kex-strict-s-v00@openssh.com")]
    extra = [k for k in base["kex"] if k in ("ext-info-s", "kex-strict-s-v00@openssh.com")]
    lines = [
        f'name = "{builtin}, plus {kex} for paramiko clients"',
        "version = 1",
        f"host keys = {', '.join(base['host_keys'])}",
        f"optional host keys = {', '.join(base['optional_host_keys'])}",
        f"key exchanges = {', '.join([*pq, kex, *extra])}",
        f"ciphers = {', '.join(base['ciphers'])}",
        f"macs = {', '.join(base['macs'])}",
        f"host_key_sizes = {json.dumps(base['hostkey_sizes'])}",
        f"dh_modulus_sizes = {json.dumps(base['dh_modulus_sizes'])}",
    ]
    if base.get("allow_hostkey_subset_and_reordering"):
        lines.append("allow_hostkey_subset_and_reordering = true")
    path.write_text("\n".join(lines) + "\n")
    return path


POOLER_PORT = 6432


def pgbouncer_settings(vm: LabVM, password: str) -> dict[str, Any]:
    """PgBouncer with a local Postgres on a lab VM: it listens on the guest's own address
    (qemu's user network gives it 10.0.2.15) and UFW lets only the controller (10.0.2.2) in.
    The pool is smaller than the check's client count, as in production under load."""
    secret = vm.directory / "app-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return {
        "listen_address": "10.0.2.15",
        "client_ranges": ["10.0.2.2/32"],
        "local_postgres": True,
        "default_pool_size": 5,
        "databases": [{"name": "app", "user": "app", "password_file": str(secret)}],
    }


def pooler_check(
    vm: LabVM, password: str, threshold: str, *args: str
) -> tuple[int, dict[str, Any]]:
    """`bulwark pooler check` from the controller through the VM's forwarded PgBouncer port."""
    exe = Path(sys.executable).with_name("bulwark")
    dsn = f"host=127.0.0.1 port={vm.port(POOLER_PORT)} dbname=app user=app"
    done = subprocess.run(
        [str(exe), "pooler", "check", dsn, "--prepare-threshold", threshold, "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PGPASSWORD": password},
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, check("pooler-check", done.stdout)


# A provider image whose apt sources lack the security archive (the image's own deb822 file
# with its -security stanza removed); harden must add it back (bulwark.updates.manage_sources).
DROP_SECURITY = (
    "f=/etc/apt/sources.list.d/debian.sources && "
    'awk \'BEGIN { RS = ""; ORS = "\\n\\n" } !/-security/\' "$f" > "$f.new" && '
    'mv "$f.new" "$f" && ! grep -rqs -- -security /etc/apt/sources.list /etc/apt/sources.list.d'
)


def without_security_archive(vm: LabVM) -> None:
    """Take the security archive out of a fresh lab VM's apt sources, as root."""
    with connect(vm.target, vm.root_login(), TrustStore(vm.directory).known_hosts) as root:
        root.run(DROP_SECURITY)
