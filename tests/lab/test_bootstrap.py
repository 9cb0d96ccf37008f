"""Bootstrap on real lab VMs: key and password first contact, idempotency, refusals."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bulwark.errors import AuthError, ConfigError, HostKeyError
from bulwark.hosts.bootstrap import TrustStore, bootstrap, require_proof
from bulwark.hosts.keys import KeyPair, ensure_key
from bulwark.hosts.ssh import Login, connect
from bulwark.lab.pytest_plugin import Boot
from bulwark.lab.vm import LabVM
from bulwark.settings.hosts import DeployUser


@pytest.fixture(scope="module")
def key_vm(lab_vms: Boot) -> LabVM:
    return lab_vms(distro="bookworm", auth="key")


@pytest.fixture(scope="module")
def password_vm(lab_vms: Boot) -> LabVM:
    return lab_vms(distro="bookworm", auth="password")


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    key, created = ensure_key(tmp_path_factory.mktemp("operator") / "id_ed25519")
    assert created
    return key


def root_shell(vm: LabVM, command: str) -> str:
    """Run a command as root through the lab's own access (not through bootstrap)."""
    with connect(vm.target, vm.root_login(), TrustStore(vm.directory).known_hosts) as s:
        return s.run(command, check=False).stdout


def test_fresh_vps_looks_like_a_provider_host(key_vm: LabVM, password_vm: LabVM) -> None:
    assert "bookworm" in root_shell(key_vm, "cat /etc/os-release")
    assert "cloud-amd64" in root_shell(key_vm, "uname -r")
    # Key mode: root by key only (Debian default); password mode: what such providers ship.
    key_sshd = root_shell(key_vm, "sshd -T")
    assert "permitrootlogin without-password" in key_sshd
    pw_sshd = root_shell(password_vm, "sshd -T")
    assert "permitrootlogin yes" in pw_sshd
    assert "passwordauthentication yes" in pw_sshd
    # Two VMs from one image never share host keys.
    assert key_vm.host_key_fingerprints
    assert set(key_vm.host_key_fingerprints.values()).isdisjoint(
        password_vm.host_key_fingerprints.values()
    )


def test_bootstrap_from_root_key_then_rerun_changes_nothing(
    key_vm: LabVM, operator: KeyPair
) -> None:
    store = TrustStore(key_vm.directory)
    first = bootstrap(key_vm.target, key_vm.root_login(), DeployUser(), operator, store)
    assert first.connected_as == "root"
    assert first.changes == [
        "created user deploy",
        f"installed key {operator.fingerprint} for deploy",
        "granted passwordless sudo to deploy (/etc/sudoers.d/bulwark-deploy)",
    ]
    assert first.proof is not None
    assert first.proof.user == "deploy"
    # Trust on first use pinned the key the guest really has (it printed it on its console).
    assert first.proof.host_key_fingerprint in key_vm.host_key_fingerprints.values()
    assert require_proof(store, key_vm.target, "deploy") == first.proof

    listing = root_shell(
        key_vm,
        "stat -c '%a %U %n' /home/deploy/.ssh /home/deploy/.ssh/authorized_keys "
        "/etc/sudoers.d/bulwark-deploy; getent shadow deploy | cut -d: -f2",
    ).split("\n")
    assert listing[:4] == [
        "700 deploy /home/deploy/.ssh",
        "600 deploy /home/deploy/.ssh/authorized_keys",
        "440 root /etc/sudoers.d/bulwark-deploy",
        "*",
    ]

    second = bootstrap(key_vm.target, key_vm.root_login(), DeployUser(), operator, store)
    assert second.changes == []
    assert second.connected_as == "deploy"  # a bootstrapped host is not touched as root again
    assert root_shell(key_vm, "grep -c bulwark /home/deploy/.ssh/authorized_keys").strip() == "1"


def test_bootstrap_from_root_password(password_vm: LabVM, operator: KeyPair) -> None:
    store = TrustStore(password_vm.directory)
    login = password_vm.root_login()
    assert login.password
    assert login.key is None
    first = bootstrap(password_vm.target, login, DeployUser(name="ops"), operator, store)
    assert "created user ops" in first.changes
    assert first.proof is not None
    assert first.proof.user == "ops"
    second = bootstrap(password_vm.target, login, DeployUser(name="ops"), operator, store)
    assert second.changes == []


def test_a_sudo_users_password_reaches_sudo_and_nothing_else(
    password_vm: LabVM, operator: KeyPair
) -> None:
    """First contact as an admin user with a password: sudo asks for it, or (NOPASSWD) does not;
    either way it never becomes the input of a command (the authorized key, the sudoers rule)."""
    store = TrustStore(password_vm.directory)
    secret = "Adm1n pass-word"
    root_shell(
        password_vm,
        "useradd -m -s /bin/bash -G sudo admin1 && "
        f"echo {shlex.quote('admin1:' + secret)} | chpasswd",
    )
    login = Login("admin1", password=secret)
    asked = bootstrap(password_vm.target, login, DeployUser(name="viapw"), operator, store)
    assert asked.connected_as == "admin1"
    assert "created user viapw" in asked.changes
    root_shell(
        password_vm,
        "echo 'admin1 ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/admin1 && chmod 440 "
        "/etc/sudoers.d/admin1",
    )
    unasked = bootstrap(password_vm.target, login, DeployUser(name="viapw2"), operator, store)
    assert "created user viapw2" in unasked.changes
    for user in ("viapw", "viapw2"):
        keys = root_shell(password_vm, f"cat /home/{user}/.ssh/authorized_keys")
        assert keys.splitlines() == [operator.public_line], keys
    leaked = root_shell(
        password_vm,
        f"grep -rlF {shlex.quote(secret)} /home/viapw /home/viapw2 /etc/sudoers.d || echo none",
    )
    assert leaked.strip() == "none"


def test_a_system_account_is_refused_as_deploy_user_before_anything_changes(
    password_vm: LabVM, operator: KeyPair
) -> None:
    store = TrustStore(password_vm.directory)
    with pytest.raises(ConfigError, match=r"^www-data is a system account on .* \(uid 33\): "):
        bootstrap(
            password_vm.target,
            password_vm.root_login(),
            DeployUser(name="www-data"),
            operator,
            store,
        )
    untouched = "test -e /etc/sudoers.d/bulwark-www-data -o -e /var/www/.ssh && echo changed"
    assert root_shell(password_vm, f"{untouched} || echo untouched").strip() == "untouched"


def test_wrong_password_is_reported_and_nothing_changes(
    password_vm: LabVM, operator: KeyPair
) -> None:
    store = TrustStore(password_vm.directory)
    with pytest.raises(AuthError, match=r"^root@127\.0\.0\.1:\d+ refused the password"):
        bootstrap(
            password_vm.target,
            Login("root", password="not-the-password"),
            DeployUser(name="wrongpw"),
            operator,
            store,
        )
    assert root_shell(password_vm, "getent passwd wrongpw || echo absent").strip() == "absent"


def test_refused_key_is_reported(password_vm: LabVM, tmp_path: Path) -> None:
    stranger, _ = ensure_key(tmp_path / "stranger")
    store = TrustStore(password_vm.directory)
    with pytest.raises(AuthError, match=re.escape(f"refused key {stranger.fingerprint}:")):
        bootstrap(
            password_vm.target, Login("root", key=stranger), DeployUser(name="k2"), stranger, store
        )


def test_host_key_mismatch_is_refused_with_both_fingerprints(
    password_vm: LabVM, operator: KeyPair, tmp_path: Path
) -> None:
    impostor, _ = ensure_key(tmp_path / "impostor_host_key")
    store = TrustStore(tmp_path / "trust")
    store.known_hosts.pin(password_vm.target.known_hosts_name, impostor.pkey)
    real = password_vm.host_key_fingerprints["ED25519"]
    with pytest.raises(HostKeyError) as caught:
        bootstrap(
            password_vm.target,
            password_vm.root_login(),
            DeployUser(name="mitm"),
            operator,
            store,
        )
    message = str(caught.value)
    assert f"pinned {impostor.fingerprint}" in message
    assert f"offered {real}" in message
    assert "\n" not in message
    assert root_shell(password_vm, "getent passwd mitm || echo absent").strip() == "absent"


def test_host_with_root_login_disabled_is_reached_as_deploy(
    key_vm: LabVM, operator: KeyPair
) -> None:
    store = TrustStore(key_vm.directory)
    with connect(key_vm.target, Login("deploy", key=operator), store.known_hosts) as s:
        s.run(
            "printf 'PermitRootLogin no\\n' > /etc/ssh/sshd_config.d/00-no-root.conf "
            "&& sshd -t && systemctl reload ssh",
            sudo=True,
        )
    with pytest.raises(AuthError):
        connect(key_vm.target, key_vm.root_login(), store.known_hosts)
    report = bootstrap(key_vm.target, key_vm.root_login(), DeployUser(), operator, store)
    assert report.connected_as == "deploy"
    assert report.changes == []
