"""bulwark's pyinfra facts, parsed from recorded command output (Debian and Ubuntu)."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bulwark.hosts.facts import (
    SECTION,
    Fail2ban,
    Fail2banJails,
    Fail2banState,
    FileStates,
    FirstUpgrade,
    Login,
    LoginContext,
    Mount,
    MountStates,
    OpensshVersion,
    Sshd,
    SshdDropinDirectives,
    SshdState,
    SshHostKeys,
    SshSocketActivated,
    Ufw,
    UfwStatus,
    UnitStates,
    WeakModuli,
)
from bulwark.hosts.operations import ConfigFile


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024", (9, 2)),
        ("OpenSSH_10.0p2 Debian-7, OpenSSL 3.5.1 1 Jul 2025", (10, 0)),
        ("OpenSSH_9.6p1 Ubuntu-3ubuntu13.5, OpenSSL 3.0.13 30 Jan 2024", (9, 6)),
        ("OpenSSH_8.9p1 Ubuntu-3ubuntu0.10, OpenSSL 3.0.2 15 Mar 2022", (8, 9)),
        ("sh: 1: ssh: not found", None),
    ],
)
def test_openssh_version(output: str, version: tuple[int, int] | None) -> None:
    assert OpensshVersion().process([output]) == version


def test_host_keys_by_type_and_size() -> None:
    lines = [
        "256 SHA256:abc root@h (ECDSA)",
        "256 SHA256:def root@h (ED25519)",
        "3072 SHA256:ghi root@h (RSA)",
    ]
    assert SshHostKeys().process(lines) == {"ECDSA": 256, "ED25519": 256, "RSA": 3072}


def test_weak_moduli_count() -> None:
    assert WeakModuli().process(["42"]) == 42
    assert WeakModuli().process([]) == 0


def test_dropin_directives_keep_file_and_line() -> None:
    lines = ["/etc/ssh/sshd_config.d/50-cloud-init.conf:1:PasswordAuthentication yes"]
    assert SshdDropinDirectives().process(lines) == [
        ("/etc/ssh/sshd_config.d/50-cloud-init.conf", 1, "PasswordAuthentication yes")
    ]


@pytest.mark.parametrize(
    ("output", "activated"),
    [(["enabled"], True), (["disabled"], False), ([], False), (["masked"], False)],
)
def test_ssh_socket_activation(output: list[str], activated: bool) -> None:
    # Ubuntu >= 22.10 starts sshd from ssh.socket; Debian does not.
    assert SshSocketActivated().process(output) is activated


def test_ufw_status_parsed() -> None:
    output = """ENABLED=yes
LOGLEVEL=low
DEFAULT_INPUT_POLICY="DROP"
DEFAULT_OUTPUT_POLICY="ACCEPT"
LOADED=yes
--added--
Added user rules (see 'ufw status' for running firewall):
ufw limit 22/tcp
ufw allow from 10.0.0.0/8 to any port 5432 proto tcp
ufw reject from 203.0.113.9 comment 'by Fail2Ban after 5 attempts against sshd'
""".splitlines()
    assert UfwStatus().process(output) == Ufw(
        active=True,
        incoming="deny",
        outgoing="allow",
        logging="low",
        rules=("limit 22/tcp", "allow from 10.0.0.0/8 to any port 5432 proto tcp"),
        # A live ban is not a rule to converge: a re-run must never lift it.
        bans=("reject from 203.0.113.9 comment 'by Fail2Ban after 5 attempts against sshd'",),
    )


@pytest.mark.parametrize(
    "output",
    [
        # A fresh install: disabled in ufw.conf, nothing loaded.
        ["ENABLED=no", "LOGLEVEL=low", 'DEFAULT_INPUT_POLICY="DROP"', "--added--", "(None)"],
        # Enabled in the file but its chains are not in the kernel (e.g. flushed by hand).
        ["ENABLED=yes", 'DEFAULT_INPUT_POLICY="DROP"', "--added--", "ufw limit 22/tcp"],
    ],
)
def test_ufw_inactive(output: list[str]) -> None:
    assert UfwStatus().process(output).active is False


def test_fail2ban_jails() -> None:
    output = ["Status", "|- Number of jail:\t2", "`- Jail list:\trecidive, sshd"]
    assert Fail2banJails().process(output) == ["recidive", "sshd"]
    assert Fail2banJails().process(["not running"]) is None


def test_file_states_read_through_sh_match_the_files(tmp_path: Path) -> None:
    # The real command, through sh, on real files: one stat and one sha1sum for all of them.
    conf = tmp_path / "80bulwark"
    conf.write_text("a\n")
    conf.chmod(0o640)
    spaced = tmp_path / "with space.conf"
    spaced.write_text("b\n")
    spaced.chmod(0o644)
    b_sha1 = hashlib.sha1(b"b\n", usedforsecurity=False).hexdigest()
    slashed = tmp_path / "back\\slash"  # sha1sum escapes such a name in its output
    slashed.write_text("a\n")
    slashed.chmod(0o644)
    paths = [str(conf), str(tmp_path / "absent"), str(spaced), str(tmp_path), str(slashed)]
    done = subprocess.run(
        ["sh", "-c", FileStates().command(paths)], capture_output=True, text=True, check=True
    )
    owner = f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}"
    assert FileStates().process(done.stdout.splitlines()) == {
        str(conf): f"640:{owner}:3f786850e387550fdab836ed7e6dc881de23001b",
        str(tmp_path / "absent"): None,
        str(spaced): f"644:{owner}:{b_sha1}",
        str(tmp_path): None,  # a directory is not a regular file
        str(slashed): f"644:{owner}:3f786850e387550fdab836ed7e6dc881de23001b",
    }
    assert FileStates().process(
        subprocess.run(
            ["sh", "-c", FileStates().command([str(tmp_path / "absent")])],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()
    ) == {str(tmp_path / "absent"): None}  # fmt: skip


def test_config_file_state_matches_what_the_fact_reports() -> None:
    wanted = ConfigFile("/etc/x", "a\n", mode="0755")
    assert wanted.state == "755:root:root:3f786850e387550fdab836ed7e6dc881de23001b"


def test_first_upgrade_stamp() -> None:
    assert FirstUpgrade().process(["2026-11-22 05:13:02.123456789 +0000"]) == "2026-11-22 05:13:02"
    assert FirstUpgrade().process([]) is None


def test_tmpfs_mounts_join_fstab_and_live_mounts() -> None:
    output = [
        f"{SECTION}fstab",
        "tmpfs /tmp tmpfs rw,nodev,nosuid,noexec,mode=1777,size=25% 0 0",
        f"{SECTION}mounts",
        "tmpfs /tmp tmpfs rw,nosuid,nodev,noexec,relatime,size=252000k 0 0",
        "tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0",
    ]
    state = MountStates().process(output)
    assert (state["/tmp"].fstab or "").startswith("tmpfs /tmp tmpfs rw,nodev")
    assert "noexec" in state["/tmp"].options
    assert state["/dev/shm"] == Mount(fstab=None, type="tmpfs", options=("rw", "nosuid", "nodev"))


def test_unit_states() -> None:
    output = ["apt-daily.timer enabled active", "systemd-timesyncd.service disabled inactive"]
    assert UnitStates().process(output) == {
        "apt-daily.timer": (True, True),
        "systemd-timesyncd.service": (False, False),
    }


def test_unit_states_one_systemctl_show_through_awk() -> None:
    """The fact's one `systemctl show` for all units, through its awk program, gives one
    "unit enabled active" line per unit in the order asked ("-" where systemd has no value)."""
    shown = (
        "UnitFileState=enabled\nActiveState=active\n\n"
        "UnitFileState=\nActiveState=inactive\n\n"
        "ActiveState=active\nUnitFileState=static\n"
    )
    names = "apt-daily.timer chrony.service systemd-timesyncd.service"
    done = subprocess.run(
        ["awk", "-v", f"names={names}", UnitStates.AWK],
        input=shown,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "apt-daily.timer enabled active",
        "chrony.service - inactive",
        "systemd-timesyncd.service static active",
    ]
    assert UnitStates().process(done.stdout.splitlines()) == {
        "apt-daily.timer": (True, True),
        "chrony.service": (False, False),
        "systemd-timesyncd.service": (True, True),
    }


def test_sshd_state_reads_every_part_of_one_command() -> None:
    output = [
        f"{SECTION}version",
        "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024",
        f"{SECTION}dropin",
        f"{SECTION}hostkeys",
        "256 SHA256:abc root@x (ED25519)",
        "3072 SHA256:def root@x (RSA)",
        f"{SECTION}others",
        "/etc/ssh/sshd_config.d/50-cloud-init.conf:1:PasswordAuthentication yes",
        f"{SECTION}moduli",
        "31",
        f"{SECTION}socket",
        "disabled",
        f"{SECTION}revert",
        "active",
    ]
    assert SshdState().process(output) == Sshd(
        version=(9, 2),
        dropin_sha1=None,
        hostkeys={"ED25519": 256, "RSA": 3072},
        others=[("/etc/ssh/sshd_config.d/50-cloud-init.conf", 1, "PasswordAuthentication yes")],
        weak_moduli=31,
        socket=False,
        revert_pending=True,
    )


def test_fail2ban_state_in_one_command() -> None:
    output = [
        f"{SECTION}sha1",
        "3f786850e387550fdab836ed7e6dc881de23001b",
        f"{SECTION}jails",
        "Status",
        "`- Jail list:\tsshd",
    ]
    state = Fail2banState().process(output)
    assert state == Fail2ban("3f786850e387550fdab836ed7e6dc881de23001b", ["sshd"])
    stopped = Fail2banState().process([f"{SECTION}sha1", f"{SECTION}jails", "not running"])
    assert stopped == Fail2ban(jail_sha1=None, jails=None)


HOST_PROGRAMS = ("systemctl", "ssh", "ssh-keygen", "sshd", "fail2ban-client", "ufw", "iptables")


@pytest.mark.parametrize(
    ("fact", "kwargs"),
    [
        (SshdState, {"dropin": "/nonexistent/00-bulwark.conf", "revert_unit": "bulwark-x"}),
        (FileStates, {"paths": ["/nonexistent/a", "/etc/hostname"]}),
        (Fail2banState, {"jail_local": "/nonexistent/jail.local"}),
        (UnitStates, {"units": ["nothing.service"]}),
        (LoginContext, {}),
    ],
)
def test_a_fact_command_succeeds_on_a_host_that_has_none_of_it(
    tmp_path: Path, fact: type[Any], kwargs: dict[str, Any]
) -> None:
    # pyinfra fails the host when a fact's command exits non-zero: a fresh host (no timer, no
    # fail2ban, no drop-in) must read as "absent", not as an error.
    for program in HOST_PROGRAMS:
        stub = tmp_path / program
        stub.write_text("#!/bin/sh\nexit 3\n")
        stub.chmod(0o755)
    done = subprocess.run(
        ["dash" if shutil.which("dash") else "sh", "-c", fact().command(**kwargs)],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_login_context_is_the_address_and_groups_of_this_login() -> None:
    assert LoginContext().process(["client 10.0.2.2", "groups deploy sudo"]) == Login(
        "10.0.2.2", ("deploy", "sudo")
    )
    assert LoginContext().process(["client ", "groups deploy"]) == Login(None, ("deploy",))
