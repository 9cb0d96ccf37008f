"""Host operations driven on recorded facts: which commands the guarded sshd change runs, in
which order, on Debian and Ubuntu hosts (socket activation included), on first runs and on runs
that find an earlier change unconfirmed; follow-up checks that run again until they pass. The
effective-config check is real shell, run against a fake sshd."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyinfra.operations import files

from bulwark.hosts import operations
from bulwark.hosts.deploys import ssh
from bulwark.hosts.facts import SECTION, FileStates
from bulwark.hosts.inventory import InventoryHost, from_data
from bulwark.hosts.operations import UPLOAD_DIR, ConfigFile
from bulwark.hosts.sshcrypto import crypto_for
from bulwark.hosts.templates import render
from tests.unit.fakes import FakeHost

DEBIAN_12 = "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024"
UBUNTU_2404 = "OpenSSH_9.6p1 Ubuntu-3ubuntu13.5, OpenSSL 3.0.13 30 Jan 2024"


def sshd_state(
    version: str = DEBIAN_12,
    *,
    dropin: str | None = None,
    rsa_bits: int = 4096,
    weak_moduli: int = 0,
    socket: str = "disabled",
    revert: str = "inactive",
) -> list[str]:
    """SshdState's output as a host prints it."""
    return [
        f"{SECTION}version", version,
        f"{SECTION}dropin", *([dropin] if dropin else []),
        f"{SECTION}hostkeys", "256 SHA256:abc root@x (ED25519)",
        f"{rsa_bits} SHA256:def root@x (RSA)",
        f"{SECTION}others",
        f"{SECTION}moduli", str(weak_moduli),
        f"{SECTION}socket", socket,
        f"{SECTION}revert", revert,
    ]  # fmt: skip


def commands(
    monkeypatch: pytest.MonkeyPatch, output: list[str], **bulwark: Any
) -> tuple[list[str], FakeHost]:
    fake = FakeHost(output)
    monkeypatch.setattr(ssh, "host", fake)
    monkeypatch.setattr(operations, "host", fake)  # `fact` asks through it

    def put(**kwargs: Any) -> Iterator[str]:
        yield f"upload {kwargs['dest']}"

    monkeypatch.setattr(files.put, "_inner", put)
    inventory_host = from_data("web1", {"ssh_hostname": "203.0.113.7", "ssh_user": "deploy",
                              "bulwark": bulwark})  # fmt: skip
    return [str(c) for c in ssh.guarded_sshd_change._inner(inventory_host=inventory_host)], fake


def wanted_sha1(inventory_host: InventoryHost, version: tuple[int, int]) -> str:
    """The drop-in's SHA-1 as a converged host reports it."""
    text = render(
        "ssh/00-bulwark.conf.j2",
        ssh=inventory_host.settings.ssh,
        allow_users=inventory_host.settings.allowed_users,
        crypto=crypto_for(version),
        openssh=f"{version[0]}.{version[1]}",
        required_rsa_size=version >= (9, 1),
    )
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def index(cmds: list[str], needle: str) -> int:
    return next(i for i, c in enumerate(cmds) if needle in c)


def test_ubuntu_2404_port_move_restarts_the_socket_last(monkeypatch: pytest.MonkeyPatch) -> None:
    cmds, _ = commands(monkeypatch, sshd_state(UBUNTU_2404, socket="enabled"), ssh={"port": 2222})
    backup, timer = index(cmds, f"cp -a /etc/ssh {ssh.BACKUP}.new"), index(cmds, "systemd-run")
    upload = index(cmds, f"upload {ssh.DROPIN}")
    assert backup < timer < upload  # nothing in /etc/ssh changes before the timer runs
    assert index(cmds, "sshd -t") > upload
    assert "port 2222" in cmds[index(cmds, "sshd -T")]
    assert cmds[-1] == "systemctl daemon-reload && systemctl restart ssh.socket"


def test_a_slow_rsa_key_is_made_before_the_revert_window_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cmds, _ = commands(monkeypatch, sshd_state(rsa_bits=3072, weak_moduli=31))
    keygen, timer = index(cmds, "ssh-keygen"), index(cmds, "systemd-run")
    assert keygen < timer
    assert ssh.STAGED_RSA in cmds[keygen]  # beside /etc/ssh, not in it
    assert ssh.KEYGEN_UNIT in cmds[keygen]  # the one started while apt worked, if any
    assert index(cmds, f"mv {ssh.STAGED_RSA} /etc/ssh/ssh_host_rsa_key") > timer
    assert index(cmds, f"> {ssh.STAGED_MODULI}") < timer < index(cmds, f"mv {ssh.STAGED_MODULI}")
    assert cmds[-1] == "systemctl reload ssh"


def test_an_unconfirmed_change_in_place_is_confirmed_not_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inventory_host = from_data("web1", {"ssh_user": "deploy"})
    converged = sshd_state(dropin=wanted_sha1(inventory_host, (9, 2)))
    cmds, fake = commands(monkeypatch, converged)
    assert cmds == []  # converged and confirmed: nothing to do
    assert fake.noops
    cmds, _ = commands(
        monkeypatch, sshd_state(dropin=wanted_sha1(inventory_host, (9, 2)), revert="active")
    )
    # Checked and reloaded (the cut-off run may have stopped before either), so the fresh login
    # that cancels the timer runs; the files stay, and so does the timer if a check fails.
    assert cmds[0].startswith("sshd -t || ")
    assert "sshd -T" in cmds[1]
    assert cmds[-1] == "systemctl reload ssh"
    assert not any("systemctl stop" in c or "systemd-run" in c or "upload" in c for c in cmds)


def test_a_new_change_over_an_unconfirmed_one_keeps_the_confirmed_backup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cmds, _ = commands(monkeypatch, sshd_state(revert="active"), ssh={"banner": "Private"})
    assert not any(f"cp -a /etc/ssh {ssh.BACKUP}" in c for c in cmds)
    assert "systemctl stop bulwark-ssh-revert.timer" in cmds[index(cmds, "systemd-run")]


FAKE_SSHD = """#!/bin/sh
# Prints a recorded `sshd -T`, as the real one would for -T -C ...
cat {config}
"""


def run_effective_check(
    tmp_path: Path, effective: str, **bulwark: Any
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "effective"
    config.write_text(effective)
    sshd = tmp_path / "sshd"
    sshd.write_text(FAKE_SSHD.format(config=config))
    sshd.chmod(0o755)
    inventory_host = from_data("web1", {"ssh_user": "deploy", "bulwark": bulwark})
    return subprocess.run(
        ["sh", "-c", ssh.effective_check(inventory_host.settings, "deploy")],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


HARDENED = (
    "port 22\npermitrootlogin no\npasswordauthentication no\n"
    "kbdinteractiveauthentication no\nauthenticationmethods publickey\nmaxauthtries 3\n"
)


@pytest.mark.parametrize(
    ("effective", "complaint"),
    [
        (HARDENED, None),
        # A provider's file read before ours (e.g. a 00-cloud.conf that sorts first) wins.
        (HARDENED.replace("passwordauthentication no", "passwordauthentication yes"),
         "lacks 'passwordauthentication no'"),
        # `Port 22` left in sshd_config adds a listener beside the drop-in's port.
        (HARDENED + "port 2222\n", "more than one port"),
    ],
)  # fmt: skip
def test_the_effective_config_must_show_the_drop_in(
    tmp_path: Path, effective: str, complaint: str | None
) -> None:
    done = run_effective_check(tmp_path, effective)
    if complaint is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0
        assert complaint in done.stderr


class FilesHost(FakeHost):
    """A host whose files are in the given states (FileStates answers for them)."""

    def __init__(self, states: Mapping[str, str | None]) -> None:
        super().__init__([])
        self.states = states

    def get_fact(self, cls: type[Any], **kwargs: Any) -> Any:
        assert cls is FileStates
        return {path: self.states.get(path) for path in kwargs["paths"]}


def config_commands(
    monkeypatch: pytest.MonkeyPatch,
    states: Mapping[str, str | None],
    *files_: ConfigFile,
    staged: bool = False,
    diff: bool = False,
) -> list[str]:
    fake = FilesHost(states)
    fake.current_op_global_arguments = {"_temp_dir": UPLOAD_DIR} if staged else {}
    fake.state = SimpleNamespace(config=SimpleNamespace(DIFF=diff))
    monkeypatch.setattr(operations, "host", fake)
    monkeypatch.setattr(operations, "_read_once", {})

    def put(**kwargs: Any) -> Iterator[str]:
        yield f"upload {kwargs['dest']}"

    monkeypatch.setattr(files.put, "_inner", put)
    return [str(c) for c in operations.config_files._inner(files=list(files_) or [SYSCTL])]


SYSCTL = ConfigFile(
    "/etc/sysctl.d/60-bulwark.conf", "kernel.kptr_restrict = 2\n", then="sysctl -q", checked=True
)


def test_a_check_that_failed_runs_again_though_its_file_is_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stamp = operations.stamp_for([SYSCTL], "sysctl -q")
    checked = {SYSCTL.dest: SYSCTL.state, stamp.dest: stamp.state}
    assert config_commands(monkeypatch, checked) == []
    # The file is in place but its check never passed (no stamp): only the check runs.
    (again,) = config_commands(monkeypatch, {SYSCTL.dest: SYSCTL.state})
    assert again.startswith("{ sysctl -q; } && ")
    assert stamp.dest in again
    # A changed file is put in place, then checked.
    cmds = config_commands(monkeypatch, {**checked, SYSCTL.dest: "644:root:root:old"})
    assert cmds[0] == f"upload {SYSCTL.dest}"
    assert cmds[1].startswith("{ sysctl -q; } && ")


def test_an_action_after_a_file_runs_only_when_the_file_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    restart = ConfigFile("/etc/postgresql/15/main/conf.d/bulwark.conf", "x = 1\n",
                         then="systemctl restart postgresql")  # fmt: skip
    assert config_commands(monkeypatch, {restart.dest: restart.state}, restart) == []
    changed = config_commands(monkeypatch, {restart.dest: None}, restart)
    assert changed == [f"upload {restart.dest}", "systemctl restart postgresql"]


def test_within_a_harden_files_are_staged_then_installed_by_one_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    banner = ConfigFile("/etc/issue.net", "Authorized access only.\n")
    sudo = ConfigFile("/etc/sudoers.d/bulwark defaults", "Defaults use_pty\n", mode="440")
    cmds = config_commands(monkeypatch, {}, banner, sudo, staged=True)
    uploads, install = cmds[:2], cmds[2]
    assert len(cmds) == 3
    staged = [c.removeprefix("FileUploadCommand(").split(", ")[-1].rstrip(")") for c in uploads]
    assert all(path.startswith(f"{UPLOAD_DIR}/put-") for path in staged)
    assert len(set(staged)) == 2
    # As a shell reads it: each file installed with its mode and owner, then the staged copies
    # removed whatever happened, and the install's status kept.
    words = shlex.split(install)
    assert words[:9] == ["install", "-D", "-m", "644", "-o", "root", "-g", "root", staged[0]]
    assert words[9] == banner.dest
    assert words[11:20] == ["install", "-D", "-m", "440", "-o", "root", "-g", "root", staged[1]]
    assert words[10] == "&&"
    assert words[20] == f"{sudo.dest};"  # one word, space and all (shlex keeps the `;`)
    assert install.endswith(f"rm -f {staged[0]} {staged[1]}; exit $r")


@pytest.mark.parametrize(("staged", "diff"), [(False, False), (True, True)])
def test_outside_a_harden_or_for_a_diff_files_go_through_pyinfra(
    monkeypatch: pytest.MonkeyPatch, staged: bool, diff: bool
) -> None:
    banner = ConfigFile("/etc/issue.net", "Authorized access only.\n")
    cmds = config_commands(monkeypatch, {}, banner, staged=staged, diff=diff)
    assert cmds == ["upload /etc/issue.net"]


def test_a_secret_is_always_staged_never_shown_by_files_put(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Even with --diff on, where config files go through files.put to show their differences.
    fake = FilesHost({})
    fake.state = SimpleNamespace(config=SimpleNamespace(DIFF=True))
    monkeypatch.setattr(operations, "host", fake)
    monkeypatch.setattr(files.put, "_inner", lambda **kwargs: iter(["files.put: shown in a diff"]))
    secret = operations.put_secret("SCRAM-SHA-256$x", "/etc/u l", mode="640", group="postgres")
    upload, install = [str(c) for c in secret]
    assert upload.startswith("FileUploadCommand(<_io.StringIO object at 0x")
    words = shlex.split(install)
    assert words[:8] == ["install", "-D", "-m", "640", "-o", "root", "-g", "postgres"]
    assert "'/etc/u l'" in install
    assert "SCRAM" not in install
