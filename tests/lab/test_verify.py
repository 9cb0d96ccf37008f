"""`bulwark verify` on a real lab VPS: fresh (fails what it should, with evidence), hardened with
PgBouncer in front of a local Postgres (passes everything applicable, the brute-force probe
included), `bulwark pooler check` against PgBouncer 1.18, a second harden run, then broken on
purpose in every control family (verification catches each), and an impostor host key
(refused). One VM, in order.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bulwark.hosts.bootstrap import TrustStore, bootstrap
from bulwark.hosts.keys import KeyPair, ensure_key
from bulwark.hosts.ssh import Login, connect
from bulwark.lab.pytest_plugin import Boot
from bulwark.lab.vm import LabVM
from bulwark.settings.hosts import DeployUser
from tests.lab import helpers
from tests.lines import PROGRESS, said
from tests.schemas import check

PROBE_PORT = 8080  # bulwark.verify.suite.test_probes listens here to prove UFW drops it
SETTINGS: dict[str, Any] = {
    # Lab connections all come from qemu's 10.0.2.2: keep the tests' quick logins clear of UFW's
    # rate limit, and let the operator's own address be ignored by fail2ban (the ban probe lifts
    # that for its run, as it would for a real operator).
    "firewall": {"ssh_rate_limit": False},
    "fail2ban": {"ignoreip": ["10.0.2.2"], "recidive": False},
}


@pytest.fixture(scope="module")
def vm(lab_vms: Boot) -> LabVM:
    return lab_vms(distro="bookworm", forwards=(PROBE_PORT, helpers.POOLER_PORT))


@pytest.fixture(scope="module")
def app_password() -> str:
    return secrets.token_urlsafe(18)


def verify(*args: str | Path, out: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`bulwark verify` as an operator runs it; returns the process and its JSON results."""
    exe = Path(sys.executable).with_name("bulwark")
    done = subprocess.run(
        [str(exe), "verify", *map(str, args), "--json", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.is_file(), f"no results written:\n{done.stdout}\n{done.stderr}"
    return done, check("verify", out.read_text())


def statuses(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (host,) = results["hosts"]
    return {c["id"]: c for c in host["controls"]}


def failing(results: dict[str, Any]) -> set[str]:
    return {cid for cid, c in statuses(results).items() if c["status"] in ("fail", "error")}


def test_a_fresh_vps_fails_what_it_should(vm: LabVM, tmp_path: Path) -> None:
    # The operator's first contact pins the host key (trust on first use), as bootstrap would.
    with connect(vm.target, vm.root_login(), TrustStore(vm.directory).known_hosts):
        pass
    done, results = verify(
        f"root@127.0.0.1:{vm.target.port}",
        "--key",
        vm.root_key_path,
        "--known-hosts",
        vm.known_hosts,
        out=tmp_path / "fresh.json",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    expected = {
        "ssh-permit-root-login",
        "ssh-password-authentication",
        "ssh-allow-users",
        "ufw-active",
        "fail2ban-active",
        "updates-unattended",
        "fs-tmp-mounts",
        "fs-proc-hidepid",
        "sysctl-accept-redirects",
        "os-sudo",
        "probe-root-login-refused",
        "probe-no-password-methods",
        "os-login-banners",
        "os-password-policy",
        "os-shell-timeout",
        "audit-auditd",
        "audit-accounting",
        "package-integrity-tools",
        "audit-file-integrity",
        "audit-rootkit-scan",
    }
    controls = statuses(results)
    assert expected <= failing(results), sorted(expected - failing(results))
    for cid in failing(results):
        assert controls[cid]["evidence"] or controls[cid]["reason"], f"{cid} has no evidence"
    # From outside: root gets in with the provider's key, and passwords are on offer.
    assert "root logged in" in controls["probe-root-login-refused"]["evidence"]
    assert "password" in controls["probe-no-password-methods"]["evidence"]
    assert controls["trust-host-key-pinned"]["status"] == "pass"
    # Without a terminal, verify's live view is time-stamped lines: how many controls the host
    # runs, each failure as it comes, and the count at the end.
    total, failed = len(controls), len(failing(results))
    steps = [line for line in done.stderr.splitlines() if PROGRESS.match(line)]
    assert any(line.endswith(f" verify 127.0.0.1: {total} controls to do") for line in steps), (
        done.stderr
    )
    assert any(line.endswith(" verify 127.0.0.1: ssh-permit-root-login failed") for line in steps)
    done_line = f" verify 127.0.0.1: done: {total} of {total} controls done, {failed} failed"
    assert any(line.endswith(done_line) for line in steps), done.stderr


def settings(vm: LabVM, password: str) -> dict[str, Any]:
    return {**SETTINGS, "pgbouncer": helpers.pgbouncer_settings(vm, password)}


@pytest.fixture(scope="module")
def inventory(vm: LabVM, app_password: str) -> Path:
    key, _ = ensure_key(vm.directory / "operator_ed25519")
    bootstrap(vm.target, vm.root_login(), DeployUser(), key, TrustStore(vm.directory))
    inv = helpers.inventory(vm, key, settings(vm, app_password))
    done = helpers.harden(inv)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return inv


@pytest.fixture(scope="module")
def operator(vm: LabVM, inventory: Path) -> KeyPair:
    key, _ = ensure_key(vm.directory / "operator_ed25519")
    return key


def test_a_hardened_vps_passes_everything_applicable(
    vm: LabVM, inventory: Path, tmp_path: Path
) -> None:
    junit = tmp_path / "verify.xml"
    done, results = verify(
        inventory,
        "--probe-key",
        vm.root_key_path,
        "--ban-probe",
        "--junit",
        junit,
        out=tmp_path / "hardened.json",
    )
    controls = statuses(results)
    assert done.returncode == 0, (done.stdout, {c: controls[c] for c in failing(results)})
    assert not failing(results)
    assert controls["probe-fail2ban-bans"]["status"] == "pass"  # opted in: it ran
    assert len(controls) >= 100
    na = {cid: c["reason"] for cid, c in controls.items() if c["status"] == "not-applicable"}
    assert all(na.values()), na  # every not-applicable says why
    assert "testcase" in junit.read_text()
    # Every control names its references and family; the summary adds up.
    (host,) = results["hosts"]
    assert sum(host["summary"].values()) == len(controls)
    # A CIS item always names the benchmark it is numbered in.
    cited = [c["references"] for c in controls.values() if c["references"]["cis"]]
    assert len(cited) >= 40
    assert all(r["cis_benchmark"].startswith("CIS Debian Linux 12") for r in cited)


PLAIN_INI = "[pytest]\n"  # none of this repository's pytest settings


def test_the_suite_runs_as_plain_pytest_with_a_testinfra_host_spec(
    vm: LabVM, operator: KeyPair, tmp_path: Path
) -> None:
    # The user and port come from the --hosts spec alone, as testinfra users write it; the
    # probes must reach the same sshd (and check its pinned key) as testinfra does.
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host 127.0.0.1\n  IdentityFile {operator.path}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {vm.known_hosts}\n  StrictHostKeyChecking yes\n  BatchMode yes\n"
    )
    (tmp_path / "pytest.ini").write_text(PLAIN_INI)
    out = tmp_path / "plain.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "bulwark.verify.suite", "-c",
         str(tmp_path / "pytest.ini"), "-p", "no:cacheprovider", "-q",
         f"--hosts=ssh://deploy@127.0.0.1:{vm.ssh_port}", f"--ssh-config={config}", "--sudo",
         "-k", "test_probes or test_port", f"--bulwark-json={out}"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    results = statuses(json.loads(out.read_text()))
    assert done.returncode == 0, (done.stdout[-3000:], results)
    assert results["probe-root-login-refused"]["status"] == "pass"
    assert results["probe-no-password-methods"]["status"] == "pass"
    assert results["ssh-port"]["status"] == "pass"
    # Reached through a forward with no forward of its own: said, not probed elsewhere.
    assert results["probe-undeclared-port-unreachable"]["status"] == "not-applicable"


def test_pooler_check_on_pgbouncer_1_18(
    vm: LabVM, inventory: Path, app_password: str, tmp_path: Path
) -> None:
    results = tmp_path / "pooler.json"
    code, found = helpers.pooler_check(vm, app_password, "5", "--results", str(results))
    assert code == 1, found  # psycopg's default is unsafe behind PgBouncer 1.18 ...
    kinds = " ".join(found["tested"]["errors"])
    assert "prepared statement" in kinds, found["tested"]["errors"]
    assert found["tested"]["refused"] == {}  # every client got in: the errors are the finding
    assert found["tested"]["server_connections_used"] >= 2
    assert found["unprepared"]["errors"] == {}, found["unprepared"]  # ... and None is safe
    assert "UNSAFE" in found["verdict"]
    # The finding reaches the auditors' report beside the host's controls.
    exe = Path(sys.executable).with_name("bulwark")
    audit = subprocess.run(
        [str(exe), "audit", "--hosts", str(results), "--format", "json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert audit.returncode == 1, audit.stdout[-2000:] + audit.stderr
    assert "pooler-check-driver-settings" in audit.stdout
    code, found = helpers.pooler_check(vm, app_password, "none")
    assert code == 0, found
    assert found["tested"]["ok"] > 0
    assert app_password not in json.dumps(found)


def test_a_second_harden_with_pgbouncer_changes_nothing(
    vm: LabVM, operator: KeyPair, inventory: Path, app_password: str
) -> None:
    again = helpers.harden(helpers.inventory(vm, operator, settings(vm, app_password)))
    assert again.returncode == 0, again.stdout[-3000:]
    assert helpers.changed_ops(again.stdout) == 0, again.stdout[-4000:]


BREAKS = [
    # sshd: a drop-in sorting BEFORE 00-bulwark.conf ("00-a" < "00-b") wins (sshd keeps the
    # first value), and a Match block only `sshd -T -C user=...` sees.
    "printf 'PermitRootLogin yes\\nPasswordAuthentication yes\\n"
    "AuthenticationMethods publickey password\\n"
    "AllowUsers deploy root\\n' > /etc/ssh/sshd_config.d/00-aaa-break.conf",
    "printf '\\nMatch User deploy\\n    AllowTcpForwarding yes\\n' >> /etc/ssh/sshd_config",
    # ... and one only a client from a range the probes do not come from would meet
    "printf '\\nMatch Address 192.0.2.0/24\\n    PermitRootLogin yes\\n' >> /etc/ssh/sshd_config",
    "systemctl reload ssh",
    # firewall: a port opened by hand, and ufw off at the next boot (the live chains stay)
    "ufw allow 8080/tcp >/dev/null",
    "sed -i 's/^ENABLED=.*/ENABLED=no/' /etc/ufw/ufw.conf",
    # fail2ban: stopped
    "systemctl stop fail2ban",
    # updates: apt's daily jobs switched off as a whole, and Ubuntu-style origins on Debian
    # (they match nothing)
    "printf 'APT::Periodic::Enable \"0\";\\n' > /etc/apt/apt.conf.d/99off",
    "printf '#clear Unattended-Upgrade::Origins-Pattern;\\nUnattended-Upgrade::Allowed-Origins "
    '{ "${distro_id}:${distro_codename}-security"; };\\n\' > /etc/apt/apt.conf.d/99break',
    # kernel and file system
    "sysctl -qw net.ipv4.conf.all.accept_redirects=1",
    "mount -o remount,exec /tmp",
    "mount -o remount,hidepid=off /proc",
    # accounts and files
    "touch /etc/hosts.equiv",
    "chmod u+s /usr/lib/openssh/ssh-keysign",
    "useradd -M -s /usr/sbin/nologin breaker && passwd -qd breaker",
    # an unexpected listener
    "nohup python3 -m http.server 9999 >/dev/null 2>&1 &",
    # the pooler: session mode (starves the pool at scale), on every address, md5 auth, and
    # its port opened to anyone
    "sed -i -e 's/^pool_mode = .*/pool_mode = session/' -e 's/^listen_addr = .*/listen_addr = */'"
    " -e 's/^auth_type = .*/auth_type = md5/' /etc/pgbouncer/pgbouncer.ini && "
    "systemctl restart pgbouncer",
    "ufw allow 6432/tcp >/dev/null",
    # time: the sync daemon stopped
    "systemctl stop systemd-timesyncd",
    # packages: a telnet server installed (a stand-in package, so no mirror is needed)
    "mkdir -p /root/fake/DEBIAN && printf 'Package: telnetd\\nVersion: 0.0-lab\\n"
    "Architecture: all\\nMaintainer: lab <lab@example.com>\\nDescription: stand-in\\n' "
    "> /root/fake/DEBIAN/control && dpkg-deb -b /root/fake /root/telnetd.deb >/dev/null && "
    "dpkg -i /root/telnetd.deb >/dev/null",
    # kernel: the module denylist gone, and a later coredump drop-in that stores dumps again
    "rm /etc/modprobe.d/bulwark-disabled.conf",
    "printf '[Coredump]\\nStorage=external\\n' > /etc/systemd/coredump.conf.d/zz-break.conf",
]
CAUGHT = {
    "ssh-permit-root-login",
    "ssh-password-authentication",
    "ssh-publickey-only",
    "ssh-allow-users",
    "ssh-forwarding",
    "ufw-declared-ports",
    "ufw-active",
    "fail2ban-active",
    "updates-unattended",
    "updates-security-origin",
    "sysctl-accept-redirects",
    "fs-tmp-mounts",
    "fs-proc-hidepid",
    "os-trusted-hosts",
    "os-suid-denylist",
    "os-no-empty-passwords",
    "net-listeners",
    "probe-root-login-refused",
    "probe-no-password-methods",
    "probe-undeclared-port-unreachable",
    "pooler-transaction-mode",
    "pooler-listen-private",
    "pooler-auth-scram",
    "pooler-firewall",
    "time-sync",
    "package-telnetd",
    "kernel-modules-disabled",
    "kernel-core-dumps",
}


def test_every_control_family_catches_a_break(
    vm: LabVM, operator: KeyPair, inventory: Path, tmp_path: Path
) -> None:
    store = TrustStore(vm.directory)
    with connect(vm.target, Login("deploy", key=operator), store.known_hosts) as s:
        for command in BREAKS:
            s.run(command, sudo=True)
    time.sleep(2)  # the listener and sshd's reload settle
    done, results = verify(inventory, "--probe-key", vm.root_key_path, out=tmp_path / "b.json")
    assert done.returncode == 1
    caught = failing(results)
    assert caught >= CAUGHT, f"missed: {sorted(CAUGHT - caught)}"
    controls = statuses(results)
    # The evidence names what the host showed, per user where Match blocks differ.
    assert "user=deploy: sshd -T allowtcpforwarding yes" in controls["ssh-forwarding"]["evidence"]
    assert (
        "user=root@addr=192.0.2.0: sshd -T permitrootlogin yes"
        in (controls["ssh-permit-root-login"]["evidence"])
    )
    assert "9999" in controls["net-listeners"]["evidence"]
    assert "ENABLED=no" in controls["ufw-active"]["evidence"]
    assert "Enable is 0" in controls["updates-unattended"]["evidence"]
    assert "8080" in controls["ufw-declared-ports"]["evidence"]


def test_an_unknown_or_changed_host_key_fails_verification(
    vm: LabVM, operator: KeyPair, inventory: Path, tmp_path: Path
) -> None:
    impostor = tmp_path / "known_hosts"
    name = f"[127.0.0.1]:{vm.target.port}"
    other, _ = ensure_key(tmp_path / "other_host_key")
    impostor.write_text(f"{name} {other.public_line}\n")
    (tmp_path / "empty_known_hosts").write_text("")
    for known in (impostor, tmp_path / "empty_known_hosts"):
        done, results = verify(
            f"deploy@127.0.0.1:{vm.target.port}",
            "--key",
            operator.path,
            "--known-hosts",
            known,
            out=tmp_path / "trust.json",
        )
        assert done.returncode == 1
        controls = statuses(results)
        assert list(controls) == ["trust-host-key-pinned"], "nothing else may run untrusted"
        assert controls["trust-host-key-pinned"]["status"] == "fail"
        assert controls["trust-host-key-pinned"]["evidence"]
    # No pin file at all is bad input, refused before any connection: not a failed control.
    exe = Path(sys.executable).with_name("bulwark")
    spec = f"deploy@127.0.0.1:{vm.target.port}"
    done = subprocess.run(
        [str(exe), "verify", spec, "--key", str(operator.path), "--known-hosts",
         str(tmp_path / "nosuch"), "--json", "--out", str(tmp_path / "none.json")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert said(done.stderr)[0].startswith("error: 127.0.0.1: known_hosts "), done.stderr
    assert "nosuch does not exist" in done.stderr
    assert not (tmp_path / "none.json").exists()
