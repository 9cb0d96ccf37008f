"""The accounts area: login.defs keys set through a real shell and read back by the real fact,
the audit rules per architecture, and the settings' boundaries."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bulwark.errors import ConfigError
from bulwark.hosts import operations
from bulwark.hosts.deploys import accounts
from bulwark.hosts.facts import LoginDefs
from bulwark.settings.hosts import LEGAL_BANNER, harden_settings

# The part of Debian 12's /etc/login.defs that matters here, commented keys included.
LOGIN_DEFS = """\
# /etc/login.defs - Configuration control definitions for the login package.
MAIL_DIR        /var/mail
PASS_MAX_DAYS\t99999
PASS_MIN_DAYS\t0
PASS_WARN_AGE\t7
UMASK\t\t022
#SHA_CRYPT_MIN_ROUNDS 5000
#SHA_CRYPT_MAX_ROUNDS 5000
ENCRYPT_METHOD SHA512
"""
WANTED = {"PASS_MAX_DAYS": "365", "PASS_MIN_DAYS": "1", "PASS_WARN_AGE": "14",
          "SHA_CRYPT_MIN_ROUNDS": "65536", "SHA_CRYPT_MAX_ROUNDS": "65536",
          "UMASK": "027"}  # fmt: skip


def read_back(path: Path) -> dict[str, str]:
    """The fact's own command, run by a shell on `path` instead of /etc/login.defs."""
    command = LoginDefs().command().replace("/etc/login.defs", str(path))
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    return LoginDefs().process(done.stdout.splitlines())


class DefsHost:
    name = "web1"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.noops: list[str] = []

    def get_fact(self, cls: type[Any], **kwargs: object) -> Any:
        assert cls is LoginDefs
        return read_back(self.path)

    def noop(self, message: str) -> None:
        self.noops.append(message)


def apply(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], DefsHost]:
    fake = DefsHost(path)
    monkeypatch.setattr(accounts, "host", fake)
    monkeypatch.setattr(operations, "host", fake)  # `fact` asks through it
    commands = [str(c) for c in accounts.login_defs._inner(values=WANTED)]
    for command in commands:
        subprocess.run(["sh", "-c", command.replace("/etc/login.defs", str(path))], check=True)
    return commands, fake


def test_login_defs_keys_are_set_in_place_or_added_and_a_rerun_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "login.defs"
    path.write_text(LOGIN_DEFS)
    commands, _ = apply(path, monkeypatch)
    assert len(commands) == 1, "every key in one round trip"
    assert read_back(path) == {"MAIL_DIR": "/var/mail", "ENCRYPT_METHOD": "SHA512", **WANTED}
    text = path.read_text()
    assert text.count("PASS_MAX_DAYS") == 1, "replaced where it was set, not added again"
    assert "#SHA_CRYPT_MIN_ROUNDS 5000" in text, "comments are left as they were"
    again, fake = apply(path, monkeypatch)
    assert again == []
    assert fake.noops == [f"login.defs sets {', '.join(WANTED)}"]


def test_the_last_setting_of_a_key_is_the_one_read() -> None:
    assert LoginDefs().process(["UMASK 022", "UMASK\t\t027", "PASS_MAX_DAYS"]) == {
        "UMASK": "027",
        "PASS_MAX_DAYS": "",
    }


def test_audit_rules_use_only_the_system_calls_each_architecture_has() -> None:
    x86 = accounts.audit_rules("x86_64")
    arm = accounts.audit_rules("aarch64")
    assert "-F arch=b32" in x86
    assert "-F arch=b32" not in arm
    for legacy in ("chmod,", "open,", "unlink,", "rename,"):
        assert legacy not in arm.replace("fchmod,", "").replace("openat", ""), legacy
    for rules in (x86, arm):
        lines = [line for line in rules.splitlines() if line and not line.startswith("#")]
        assert all(line.startswith(("-a always,exit ", "-w ")) for line in lines), lines
        keys = {line.rsplit(" -k ", 1)[1] for line in lines}
        assert keys >= {"identity", "scope", "sshd", "time-change", "modules", "access"}
    assert "-e 2" not in x86, "the lock lives in its own file, loaded last"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ssh": {"banner": "   "}}, "bulwark.ssh.banner: is empty"),
        ({"ssh": {"banner": "Authorised only \\s"}}, "bulwark.ssh.banner: holds a backslash"),
        ({"ssh": {"banner": "a\x1b[31mb"}}, "bulwark.ssh.banner: holds a control character"),
        ({"ssh": {"banner": "x\n" * 21}}, "bulwark.ssh.banner: is longer than 20 lines"),
        ({"accounts": {"password_max_days": 0}}, "bulwark.accounts.password_max_days"),
        ({"accounts": {"hash_rounds": 1000}}, "bulwark.accounts.hash_rounds"),
        ({"accounts": {"shell_timeout": -1}}, "bulwark.accounts.shell_timeout"),
        ({"audit": {"auditd": "maybe"}}, "bulwark.audit.auditd"),
        ({"audit": {"colour": True}}, "bulwark.audit.colour"),
    ],
)
def test_bad_accounts_and_audit_settings_are_one_line_naming_the_field(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        harden_settings(data)
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_the_default_banner_is_a_legal_notice_lynis_counts() -> None:
    # Lynis BANN-7126/7130 need at least five of its keywords; the notice has more.
    keywords = ("access", "authori", "monitor", "private", "prohibited", "record", "law",
                "system")  # fmt: skip
    assert sum(k in LEGAL_BANNER.lower() for k in keywords) >= 5
    assert harden_settings(None).ssh.banner == LEGAL_BANNER
