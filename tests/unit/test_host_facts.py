"""bulwark's pyinfra facts, parsed from recorded command output (Debian and Ubuntu)."""

from __future__ import annotations

import pytest

from bulwark.hosts.facts import (
    Fail2banJails,
    OpensshVersion,
    SshdDropinDirectives,
    SshHostKeys,
    SshSocketActivated,
    UfwStatus,
    WeakModuli,
)


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
    output = """Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
22/tcp                     LIMIT IN    Anywhere
--added--
Added user rules (see 'ufw status' for running firewall):
ufw limit 22/tcp
ufw allow from 10.0.0.0/8 to any port 5432 proto tcp""".splitlines()
    assert UfwStatus().process(output) == {
        "active": True,
        "incoming": "deny",
        "outgoing": "allow",
        "logging": "low",
        "rules": ["limit 22/tcp", "allow from 10.0.0.0/8 to any port 5432 proto tcp"],
    }


def test_ufw_inactive() -> None:
    state = UfwStatus().process(["Status: inactive", "--added--", "(None)"])
    assert state["active"] is False
    assert state["rules"] == []


def test_fail2ban_jails() -> None:
    output = ["Status", "|- Number of jail:\t2", "`- Jail list:\trecidive, sshd"]
    assert Fail2banJails().process(output) == ["recidive", "sshd"]
    assert Fail2banJails().process(["not running"]) is None
