"""What the hardening deploys would write, per distro, without a host."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from ssh_audit.builtin_policies import BUILTIN_POLICIES  # type: ignore[import-untyped]

from bulwark.errors import ConfigError
from bulwark.hosts.deploys.fail2ban import check_jails
from bulwark.hosts.deploys.firewall import wanted_rules
from bulwark.hosts.deploys.ssh import SshPlan, managed_keys, reload_command
from bulwark.hosts.deploys.updates import dry_run_check, security_origin
from bulwark.hosts.sshcrypto import (
    DEBIAN_12,
    PARAMIKO_KEX,
    PQ_FIRST,
    UBUNTU_2404,
    SshCrypto,
    crypto_for,
)
from bulwark.hosts.templates import render
from bulwark.settings.hosts import FirewallSettings, HardenSettings, harden_settings


@pytest.mark.parametrize(
    ("version", "crypto"),
    [((9, 2), DEBIAN_12), ((8, 9), DEBIAN_12), ((9, 6), UBUNTU_2404), ((10, 0), PQ_FIRST)],
)
def test_crypto_follows_the_openssh_version(version: tuple[int, int], crypto: object) -> None:
    assert crypto_for(version) is crypto


def test_too_old_openssh_is_refused() -> None:
    with pytest.raises(ValueError, match=r"OpenSSH 7\.4 is too old"):
        crypto_for((7, 4))


def test_no_weak_algorithms_in_any_set() -> None:
    for crypto in (DEBIAN_12, UBUNTU_2404, PQ_FIRST):
        assert all("etm" in mac for mac in crypto.macs)
        assert not any("sha1" in kex or "nistp" in kex for kex in crypto.kex)
        assert not any("cbc" in c for c in crypto.ciphers)


def dropin(settings: HardenSettings, version: tuple[int, int] = (9, 2)) -> str:
    return render(
        "ssh/00-bulwark.conf.j2",
        ssh=settings.ssh,
        allow_users=settings.allowed_users,
        crypto=crypto_for(version),
        openssh=f"{version[0]}.{version[1]}",
        required_rsa_size=version >= (9, 1),
    )


def directives(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            # HostKey is the one directive sshd takes many times; all others: first wins.
            assert key.lower() == "hostkey" or key.lower() not in found, f"{key} set twice"
            found[key.lower()] = value
    return found


def test_sshd_dropin_defaults() -> None:
    conf = directives(dropin(HardenSettings()))
    assert conf["permitrootlogin"] == "no"
    assert conf["passwordauthentication"] == "no"
    assert conf["kbdinteractiveauthentication"] == "no"
    assert conf["authenticationmethods"] == "publickey"
    assert conf["allowusers"] == "deploy"
    assert conf["x11forwarding"] == "no"
    assert conf["disableforwarding"] == "yes"
    assert conf["loglevel"] == "VERBOSE"
    assert conf["port"] == "22"
    assert conf["banner"] == "/etc/issue.net"  # the legal notice, on by default
    assert conf["printlastlog"] == "no"  # dev-sec sshd-45 (Lynis prefers yes)
    assert conf["clientalivecountmax"] == "2"
    assert conf["kexalgorithms"] == ",".join(DEBIAN_12.kex)
    assert "banner" not in directives(dropin(harden_settings({"ssh": {"banner": None}})))


def test_sshd_dropin_reflects_settings() -> None:
    settings = harden_settings(
        {"ssh": {"port": 2222, "allow_users": ["deploy", "ops"], "banner": "Authorised only"}}
    )
    conf = directives(dropin(settings, (8, 9)))
    assert conf["port"] == "2222"
    assert conf["allowusers"] == "deploy ops"
    assert conf["banner"] == "/etc/issue.net"
    assert "requiredrsasize" not in conf  # OpenSSH < 9.1 would reject it


def test_managed_keys_cover_what_providers_ship() -> None:
    assert {"passwordauthentication", "permitrootlogin", "kbdinteractiveauthentication"} <= (
        managed_keys()
    )


def test_firewall_rules_in_ufw_show_added_form() -> None:
    fw = FirewallSettings.model_validate(
        {
            "allow": [{"port": 443}, {"port": 5432, "sources": ["10.0.0.0/8"]}],
            "ssh_sources": ["any"],
        }
    )
    assert wanted_rules(fw, [22, 2222]) == [
        "limit 22/tcp",
        "limit 2222/tcp",
        "allow 443/tcp",
        "allow from 10.0.0.0/8 to any port 5432 proto tcp",
    ]


@pytest.mark.parametrize(
    ("distro", "codename", "line", "origin"),
    [
        (
            "debian",
            "bookworm",
            '"origin=Debian,codename=${distro_codename}-security,label=Debian-Security";',
            "origin=Debian,codename=bookworm-security,label=Debian-Security",
        ),
        (
            "ubuntu",
            "noble",
            '"${distro_id}:${distro_codename}-security";',
            "o=Ubuntu,a=noble-security",
        ),
    ],
)
def test_unattended_upgrades_origins_per_distro(
    distro: str, codename: str, line: str, origin: str
) -> None:
    text = render(
        "apt/50unattended-upgrades.j2",
        distro_id=distro,
        codename=codename,
        updates=HardenSettings().updates,
    )
    assert line in text
    assert security_origin(distro, codename) == origin
    if distro == "ubuntu":
        assert "ESM" in text
        assert "Origins-Pattern" not in text
    else:
        assert "Allowed-Origins" not in text


def test_jail_local_uses_the_journal_and_the_real_port() -> None:
    settings = harden_settings({"ssh": {"port": 2222}, "fail2ban": {"ignoreip": ["192.0.2.0/24"]}})
    text = render(
        "fail2ban/jail.local.j2",
        f2b=settings.fail2ban,
        ignoreip=["127.0.0.1/8", "::1", *settings.fail2ban.ignoreip],
        ssh_port=settings.ssh.port,
    )
    sshd = text.split("[sshd]")[1].split("[recidive]")[0]
    assert "backend = systemd" in sshd
    assert "port = 2222" in sshd
    assert "banaction = ufw" in text
    assert "192.0.2.0/24" in text


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"ssh": {"port": 0}}, "bulwark.ssh.port"),
        ({"ssh": {"allow_users": ["Root!"]}}, "bulwark.ssh.allow_users[0]"),
        ({"firewall": {"allow": [{"port": 70000}]}}, "bulwark.firewall.allow[0].port"),
        ({"sssh": {}}, "bulwark.sssh"),
        ({"updates": {"reboot_time": "4am"}}, "bulwark.updates.reboot_time"),
    ],
)
def test_bad_host_data_names_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(field)}: "):
        harden_settings(data)


def plan(**changes: object) -> SshPlan:
    base = SshPlan(
        dropin="",
        dropin_changes=True,
        neutralise=(),
        remove_host_keys=(),
        regenerate_rsa=False,
        filter_moduli=False,
        port_changes=False,
        socket_activated=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "command"),
    [
        ({}, "systemctl reload ssh"),
        ({"port_changes": True}, "systemctl restart ssh"),
        # Ubuntu >= 22.10: the socket owns the port.
        ({"port_changes": True, "socket_activated": True}, "systemctl restart ssh.socket"),
        ({"socket_activated": True}, "systemctl reload ssh"),
    ],
)
def test_sshd_reload_per_init_style(changes: dict[str, object], command: str) -> None:
    assert reload_command(plan(**changes)).endswith(command)


def test_empty_plan_means_nothing_to_do() -> None:
    assert plan(dropin_changes=False).empty
    assert not plan(dropin_changes=False, filter_moduli=True).empty


def test_needrestart_never_prompts() -> None:
    assert "$nrconf{restart} = 'a';" in render("apt/needrestart-bulwark.conf.j2")
    assert 'DPkg::Lock::Timeout "300";' in render("apt/80bulwark.j2")


def test_debian_13_differs_from_ssh_audits_policy_only_by_paramikos_kex() -> None:
    policy = BUILTIN_POLICIES["Hardened Debian 13 (version 1)"]
    server_added = {"ext-info-s", "kex-strict-s-v00@openssh.com"}
    assert [k for k in policy["kex"] if k not in server_added] == list(PQ_FIRST.kex[:-1])
    assert PQ_FIRST.kex[-1] == PARAMIKO_KEX
    assert list(PQ_FIRST.ciphers) == policy["ciphers"]
    assert list(PQ_FIRST.macs) == policy["macs"]
    assert list(PQ_FIRST.host_key_algorithms) == policy["host_keys"]


@pytest.mark.parametrize(
    ("crypto", "name"),
    [(DEBIAN_12, "Hardened Debian 12 (version 2)"),
     (UBUNTU_2404, "Hardened Ubuntu Server 24.04 LTS (version 2)")],
)  # fmt: skip
def test_crypto_sets_equal_ssh_audits_policies(crypto: SshCrypto, name: str) -> None:
    policy = BUILTIN_POLICIES[name]
    server_added = {"ext-info-s", "kex-strict-s-v00@openssh.com"}
    assert list(crypto.kex) == [k for k in policy["kex"] if k not in server_added]
    assert list(crypto.ciphers) == policy["ciphers"]
    assert list(crypto.macs) == policy["macs"]
    assert list(crypto.host_key_algorithms) == policy["host_keys"]


@pytest.mark.parametrize(
    ("data", "field", "fix"),
    [
        ({"ssh": {"max_startups": "not-a-number"}}, "bulwark.ssh.max_startups", "10:30:60"),
        ({"ssh": {"max_startups": "60:30:10"}}, "bulwark.ssh.max_startups", "must not exceed"),
        ({"ssh": {"allow_groups": ["Ops Team"]}}, "bulwark.ssh.allow_groups[0]", "group name"),
        ({"fail2ban": {"bantime": "an hour"}}, "bulwark.fail2ban.bantime", "10m, 1h"),
        ({"fail2ban": {"ignoreip": ["10.0.0.0/33"]}}, "bulwark.fail2ban.ignoreip[0]", "CIDR"),
        ({"updates": {"reboot_time": "99:99"}}, "bulwark.updates.reboot_time", "HH:MM"),
        ({"updates": {"mail": 'ops@x.org" ; evil'}}, "bulwark.updates.mail", "one address"),
    ],
)
def test_free_text_settings_are_checked_before_any_host(
    data: dict[str, object], field: str, fix: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(field)}: .*{re.escape(fix)}"):
        harden_settings(data)


def test_valid_free_text_settings_pass() -> None:
    conf = harden_settings(
        {"ssh": {"max_startups": "10", "allow_groups": ["ssh-users"]},
         "fail2ban": {"bantime": "1h30m", "findtime": "600", "ignoreip": ["192.0.2.7"]},
         "updates": {"reboot_time": "23:59", "mail": "ops@example.com"}}
    )  # fmt: skip
    assert conf.fail2ban.bantime == "1h30m"


def stand_ins(directory: Path, programs: dict[str, str]) -> dict[str, str]:
    """Write stand-in programs into `directory`; the environment that runs them first."""
    for name, text in programs.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)
    return {"PATH": f"{directory}:/usr/bin:/bin"}


FAKE_DRY_RUN = """#!/bin/sh
[ "$*" = "--dry-run -d" ] && [ "$PYTHONUNBUFFERED" = 1 ] || exit 64
if [ -n "$LOCKED" ]; then  # another run holds the lock for the first $LOCKED attempts
    n=$(($(cat "$LOCKED.n" 2>/dev/null || echo 0) + 1)); echo $n > "$LOCKED.n"
    if [ $n -le "$(cat "$LOCKED")" ]; then
        echo 'Lock could not be acquired (another package manager running?)'
        echo 'Cache lock can not be acquired, exiting'; exit 1
    fi
fi
echo 'Starting unattended upgrades script'
if [ -n "$SPLIT" ]; then  # a buffer flush in the middle of the line
    printf 'Allowed origins are: %s' "${ORIGINS%%-security*}"; sleep 1
    echo "-security${ORIGINS#*-security}"
else
    echo "Allowed origins are: $ORIGINS"
fi
echo 'Initial blacklist: '
[ -n "$STAY" ] && while :; do sleep 1; done
exit 0
"""


SECURITY = "origin=Debian,codename=bookworm-security,label=Debian-Security"


def run_dry_run_check(
    directory: Path, check: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run the check in sh with the stand-in unattended-upgrade first on PATH."""
    return subprocess.run(
        ["sh", "-c", check],
        check=False,
        env=stand_ins(directory, {"unattended-upgrade": FAKE_DRY_RUN}) | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("origins", "stay", "split", "passes"),
    [
        (SECURITY, "1", "", True),
        (SECURITY, "", "", True),
        (SECURITY, "1", "1", True),
        ("origin=Debian,codename=bookworm,label=Debian", "1", "", False),
        ("", "", "", False),
    ],
    ids=["stopped-early", "exited", "line-split", "security-missing", "no-origins"],
)
def test_dry_run_check_reads_the_allowed_origins_and_stops_the_dry_run(
    tmp_path: Path, origins: str, stay: str, split: str, passes: bool
) -> None:
    """Run for real in sh against a stand-in unattended-upgrade that would go on for minutes:
    the check decides from the allowed-origins line and leaves no dry run behind."""
    origin = security_origin("debian", "bookworm")
    done = run_dry_run_check(tmp_path, dry_run_check(origin),
                             {"ORIGINS": origins, "STAY": stay, "SPLIT": split})  # fmt: skip
    assert (done.returncode == 0) is passes, done.stderr
    if not passes:
        assert f"unattended-upgrade would not use {origin}" in done.stderr
    left = subprocess.run(
        ["pgrep", "-f", f"{tmp_path}/unattended-upgrade"], check=False, capture_output=True
    )
    assert left.returncode == 1, "the dry run was left running"


@pytest.mark.parametrize(
    ("held", "tries", "passes"), [(2, 5, True), (4, 2, False)], ids=["waits", "gives-up"]
)
def test_dry_run_check_waits_while_another_unattended_upgrade_holds_the_lock(
    tmp_path: Path, held: int, tries: int, passes: bool
) -> None:
    """A fresh host runs apt-daily-upgrade on its own: the dry run refuses while that holds
    the lock, and the check tries again instead of failing the harden."""
    (tmp_path / "locked").write_text(str(held))
    origin = security_origin("debian", "bookworm")
    done = run_dry_run_check(
        tmp_path,
        dry_run_check(origin, pause=0.1, tries=tries),
        {"ORIGINS": SECURITY, "STAY": "1", "SPLIT": "", "LOCKED": str(tmp_path / "locked")},
    )
    assert (done.returncode == 0) is passes, done.stderr
    attempts = int((tmp_path / "locked.n").read_text())
    assert attempts == (held + 1 if passes else tries + 1)
    if not passes:
        assert "Lock could not be acquired" in done.stderr


FAKE_STATUS = """#!/bin/sh
[ "$*" = "status" ] || exit 64
printf 'Status\\n|- Number of jail:\\t2\\n`- Jail list:\\t%s\\n' "$JAILS"
"""
FAKE_SYSTEMCTL = """#!/bin/sh
[ "$*" = "is-active --quiet fail2ban" ] || exit 64
exit "$INACTIVE"
"""


@pytest.mark.parametrize(
    ("jails", "inactive", "missing"),
    [
        ("recidive, sshd", "0", None),
        ("sshd", "0", "recidive"),
        ("sshd-ddos, recidive", "0", "sshd"),
        ("recidive, sshd", "3", "sshd recidive"),
    ],
    ids=["both-loaded", "recidive-missing", "only-a-lookalike", "service-inactive"],
)
def test_jail_check_needs_the_service_active_and_every_jail_loaded(
    tmp_path: Path, jails: str, inactive: str, missing: str | None
) -> None:
    env = stand_ins(tmp_path, {"fail2ban-client": FAKE_STATUS, "systemctl": FAKE_SYSTEMCTL})
    env |= {"JAILS": jails, "INACTIVE": inactive}
    done = subprocess.run(
        ["sh", "-c", check_jails(["sshd", "recidive"], seconds=2)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode == 0) is (missing is None), done.stderr
    if missing:
        assert f"jails are not loaded: {missing}: see journalctl -u fail2ban" in done.stderr
