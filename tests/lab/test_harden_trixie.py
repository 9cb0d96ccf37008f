"""Hardening on Debian 13 (OpenSSH 10, post-quantum key exchange) on a real lab VPS, with
PgBouncer 1.24 in front of a local Postgres: `bulwark pooler check` there, then verification."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bulwark.errors import AuthError
from bulwark.hosts.bootstrap import TrustStore, bootstrap
from bulwark.hosts.keys import KeyPair, ensure_key
from bulwark.hosts.ssh import Login, connect
from bulwark.hosts.sshcrypto import PARAMIKO_KEX
from bulwark.lab.pytest_plugin import Boot
from bulwark.lab.vm import LabVM
from bulwark.settings.hosts import DeployUser
from tests.lab import helpers
from tests.lab.helpers import (
    changed_ops,
    harden,
    inventory,
    policy_with_extra_kex,
    read_alone,
    ssh_audit,
)

# ssh-audit's probes (deliberately mismatched algorithms) look like a scanner to fail2ban; an
# operator who audits from a known address lists it in ignoreip, as this lab does for qemu's
# 10.0.2.2. UFW's SSH rate limit stays on.
SETTINGS = {"fail2ban": {"ignoreip": ["10.0.2.2"]}}


@pytest.fixture(scope="module")
def vm(lab_vms: Boot) -> LabVM:
    # 8080: verify's undeclared-port probe; 6432: PgBouncer.
    return lab_vms(distro="trixie", forwards=(8080, helpers.POOLER_PORT))


@pytest.fixture(scope="module")
def app_password() -> str:
    return secrets.token_urlsafe(18)


def settings(vm: LabVM, password: str) -> dict[str, object]:
    return {**SETTINGS, "pgbouncer": helpers.pgbouncer_settings(vm, password)}


@pytest.fixture(scope="module")
def operator(vm: LabVM) -> KeyPair:
    key, _ = ensure_key(vm.directory / "operator_ed25519")
    helpers.without_security_archive(vm)  # harden must make security updates able to arrive
    bootstrap(vm.target, vm.root_login(), DeployUser(), key, TrustStore(vm.directory))
    return key


@pytest.fixture(scope="module")
def hardened(vm: LabVM, operator: KeyPair, app_password: str) -> subprocess.CompletedProcess[str]:
    return harden(inventory(vm, operator, settings(vm, app_password)))


def test_trixie_hardens(
    vm: LabVM, operator: KeyPair, hardened: subprocess.CompletedProcess[str]
) -> None:
    assert hardened.returncode == 0, hardened.stdout[-3000:] + hardened.stderr[-2000:]
    with pytest.raises(AuthError):
        connect(vm.target, vm.root_login(), TrustStore(vm.directory).known_hosts)
    store = TrustStore(vm.directory)
    with connect(vm.target, Login("deploy", key=operator), store.known_hosts) as s:
        assert "sshd" in s.run("fail2ban-client status", sudo=True).stdout
        assert re.search(r"^22/tcp\s+LIMIT", s.run("ufw status", sudo=True).stdout, re.M)
        dry = s.run("unattended-upgrade --dry-run -d 2>&1", sudo=True, timeout=600).stdout
        assert "origin=Debian,codename=trixie-security,label=Debian-Security" in dry


def test_pooler_check_on_pgbouncer_1_24(vm: LabVM, hardened: object, app_password: str) -> None:
    # PgBouncer >= 1.22 with max_prepared_statements tracks psycopg's prepares, and the
    # controller's libpq (psycopg's wheel bundles >= 17) closes them: the defaults are safe.
    code, found = helpers.pooler_check(vm, app_password, "5")
    assert code == 0, found
    assert found["tested"]["errors"] == {}, found["tested"]
    assert found["unprepared"]["errors"] == {}, found["unprepared"]
    assert found["tested"]["server_connections_used"] >= 2  # statements met other servers
    assert "is safe here" in found["verdict"]
    assert "deallocation included" in found["verdict"]


def test_trixie_second_run_changes_nothing(
    vm: LabVM, operator: KeyPair, hardened: subprocess.CompletedProcess[str], app_password: str
) -> None:
    again = harden(inventory(vm, operator, settings(vm, app_password)))
    assert again.returncode == 0, again.stdout[-3000:]
    assert changed_ops(again.stdout) == 0, again.stdout[-4000:]
    assert read_alone(again.stdout) == []
    dry = harden(inventory(vm, operator, settings(vm, app_password)), "--dry")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert changed_ops(dry.stdout) == 0, dry.stdout


def test_trixie_verifies(
    vm: LabVM, operator: KeyPair, hardened: object, tmp_path: Path, app_password: str
) -> None:
    exe = Path(sys.executable).with_name("bulwark")
    out = tmp_path / "verify.json"
    inv = inventory(vm, operator, settings(vm, app_password))
    done = subprocess.run(
        [str(exe), "verify", str(inv), "--probe-key", str(vm.root_key_path), "--ban-probe",
         "--json", "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    (host,) = json.loads(out.read_text())["hosts"]
    bad = [c for c in host["controls"] if c["status"] in ("fail", "error")]
    assert done.returncode == 0, bad or done.stdout + done.stderr
    assert host["summary"]["pass"] >= 100
    # fail2ban bans a brute-forcer on Debian 13 too (the probe lifts the operator's ignoreip).
    (ban,) = [c for c in host["controls"] if c["id"] == "probe-fail2ban-bans"]
    assert ban["status"] == "pass", ban


def test_trixie_passes_its_ssh_audit_policy(vm: LabVM, hardened: object) -> None:
    # Last in the module: ssh-audit opens many connections in a burst, which UFW's SSH rate
    # limit (6 new connections in 30 s per source) then throttles; a fresh window first.
    time.sleep(31)
    policy = policy_with_extra_kex(
        "Hardened Debian 13 (version 1)", PARAMIKO_KEX, vm.directory / "policy.txt"
    )
    audit = ssh_audit(vm.ssh_port, str(policy))
    assert audit.returncode == 0, audit.stdout[-3000:]
