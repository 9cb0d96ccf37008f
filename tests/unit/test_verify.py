"""bulwark verify without a host: control catalogue, parsers on recorded output, results, the
runner's SSH config and target parsing."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import bulwark.verify.suite
from bulwark.errors import BulwarkError, ConfigError
from bulwark.settings.hosts import HardenSettings
from bulwark.verify import run
from bulwark.verify.controls import CONTROLS
from bulwark.verify.results import ControlResult, HostResult, Report
from bulwark.verify.state import (
    UNITS_AWK,
    HostState,
    SnapshotError,
    clock_offset,
    early_parts,
    match_contexts_command,
    parse_fail2ban,
    parse_sshd_t,
    parse_ufw,
    snapshot_command,
    snapshot_parts,
    split_snapshot,
)
from bulwark.verify.suite import test_accounts as accounts
from bulwark.verify.suite import test_ban_probe as ban_probe
from bulwark.verify.suite import test_kernel as kernel
from bulwark.verify.suite import test_os as os_controls
from bulwark.verify.suite import test_services as services
from bulwark.verify.suite import test_ssh as ssh_controls
from bulwark.verify.suite.test_services import allowed_origin_matches, origin_matches
from tests.unit.openssh import openssh_reads

for module in pkgutil.iter_modules(bulwark.verify.suite.__path__):
    importlib.import_module(f"bulwark.verify.suite.{module.name}")

# dev-sec controls that exist in the current baselines (ssh-baseline 2.x, linux-baseline 2.x),
# minus the ones that cannot apply to Debian or Ubuntu (os-05b is RedHat-only).
DEVSEC = (
    [f"sshd-{n:02d}" for n in range(1, 50) if n != 26]
    + [f"os-{n:02d}" for n in range(1, 17)]
    + ["os-03b"]
    + [f"sysctl-{n:02d}" for n in range(1, 35) if n not in (18, 31)]
    + ["sysctl-31a", "sysctl-31b"]
    + [f"package-{n:02d}" for n in (1, 2, 3, 5, 6, 7, 8, 9)]
)


def test_every_applicable_devsec_control_is_covered() -> None:
    covered = {ref for c in CONTROLS.values() for ref in c.devsec}
    assert not set(DEVSEC) - covered, sorted(set(DEVSEC) - covered)


FAMILIES = {"ssh", "ufw", "fail2ban", "updates", "time", "sysctl", "kernel", "fs", "os", "net",
            "package", "pooler", "probe", "audit"}  # fmt: skip
# Families with no CIS or dev-sec counterpart: bulwark's own proofs.
OWN = {"fail2ban", "pooler", "probe"}
# Kernel settings dev-sec's os_hardening role applies that no baseline control checks.
OWN_SYSCTL = {"sysctl-kernel-pointers", "sysctl-bpf"}
# What Lynis asks for beyond CIS and dev-sec (KRNL-6000's profile, ACCT-9622/9626, PKGS-7370/7394,
# HRDN-7230's malware scanner, FILE-6344's hidepid).
LYNIS = {"sysctl-perf-events", "sysctl-tty-ldisc", "audit-accounting", "package-integrity-tools",
         "ssh-compression", "os-compilers-restricted", "audit-rootkit-scan",
         "fs-proc-hidepid"}  # fmt: skip


def test_controls_have_stable_ids_and_say_why() -> None:
    assert len(CONTROLS) >= 100
    for cid, control in CONTROLS.items():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", cid), cid
        assert control.family in FAMILIES, f"{cid}: a new family? (typo in the id)"
        assert control.title
        assert control.rationale
        if control.family not in OWN and cid not in OWN_SYSCTL | LYNIS:
            assert control.cis or control.devsec, f"{cid} cites neither CIS nor dev-sec"


SSHD_T = """port 22
permitrootlogin no
allowusers deploy
allowusers ops
hostkey /etc/ssh/ssh_host_ed25519_key
hostkey /etc/ssh/ssh_host_rsa_key
ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com
"""


def test_sshd_t_keeps_repeated_keywords() -> None:
    config = parse_sshd_t(SSHD_T.splitlines())
    assert config["allowusers"] == ["deploy", "ops"]
    assert config["hostkey"][1] == "/etc/ssh/ssh_host_rsa_key"
    assert config["permitrootlogin"] == ["no"]


def test_snapshot_round_trip() -> None:
    command = snapshot_command({"a": "echo 1", "b": "echo 2; echo 3"})
    assert "echo 1" in command
    marker = "@@bulwark-verify "
    output = f"{marker}a\n1\n{marker}b\n2\n3\n"
    assert split_snapshot(output) == {"a": ["1"], "b": ["2", "3"]}


@pytest.mark.parametrize(
    ("host_time", "offset"),
    [(1000.0, -10.0), (1010.0, 0.0), (1025.0, 0.0), (1030.0, 0.0), (1046.0, 16.0)],
)
def test_clock_is_judged_against_the_whole_read_window(host_time: float, offset: float) -> None:
    # A snapshot requested at 1010 that came back at 1030: any host time inside agrees.
    assert clock_offset(host_time, sent=1010.0, received=1030.0) == offset


def test_the_clock_and_the_listeners_are_read_apart_before_the_snapshot() -> None:
    assert set(early_parts()) == {"time", "listen"}
    assert not set(early_parts()) & set(snapshot_parts(["root"]))


class ScriptedHost:
    """testinfra's host.run answering the first read and the snapshot (which run at once, in
    either order) with their scripted outputs."""

    def __init__(self, early: tuple[int, str], snapshot: tuple[int, str]) -> None:
        self.early, self.snapshot = early, snapshot

    def run(self, command: str, *args: str) -> Any:
        rc, stdout = self.early if "timedatectl" in args[0] else self.snapshot
        return SimpleNamespace(rc=rc, stdout=stdout, stderr="")


def _printed(parts: dict[str, str]) -> str:
    return "".join(f"@@bulwark-verify {name}\nx\n" for name in parts)


def test_a_snapshot_cut_short_is_an_error_not_evidence() -> None:
    whole = _printed(snapshot_parts(["root", "deploy", "bulwark-nobody"]))
    state = HostState(ScriptedHost((0, _printed(early_parts())), (0, whole)), "deploy")
    assert state.lines("mounts") == ["x"]
    assert state.early.is_set()
    assert state.read_at <= state.read_done
    half = whole[: len(whole) // 2]
    cut = HostState(ScriptedHost((0, _printed(early_parts())), (255, half)), "deploy")
    with pytest.raises(SnapshotError, match=r"parts missing, from \S+ on \(exit 255"):
        cut.lines("mounts")


UFW = """Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
22/tcp                     LIMIT IN    Anywhere
5432/tcp                   ALLOW IN    10.0.0.0/8
22/tcp (v6)                LIMIT IN    Anywhere (v6)
Anywhere                   REJECT IN   203.0.113.9      # by Fail2Ban after 5 attempts against sshd
"""


def test_ufw_status_table() -> None:
    state = parse_ufw(UFW.splitlines())
    assert state.active
    assert (state.incoming, state.outgoing) == ("deny", "allow")
    rules = [(r.to, r.action, r.source, r.v6) for r in state.rules]
    assert rules == [
        ("22/tcp", "LIMIT IN", "Anywhere", False),
        ("5432/tcp", "ALLOW IN", "10.0.0.0/8", False),
        ("22/tcp", "LIMIT IN", "Anywhere", True),
        ("Anywhere", "REJECT IN", "203.0.113.9", False),
    ]


def _state(raw: dict[str, list[str]]) -> HostState:
    state = HostState(host=None, deploy_user="deploy")
    state.__dict__["raw"] = raw  # as if read from a host
    return state


def test_a_live_fail2ban_ban_is_not_an_undeclared_port() -> None:
    settings = HardenSettings.model_validate({"firewall": {"allow": [{"port": 5432,
                                              "sources": ["10.0.0.0/8"]}]}})  # fmt: skip
    services.test_ufw_declared_ports(_state({"ufw": UFW.splitlines()}), settings)
    opened = UFW.replace(
        "Anywhere                   REJECT IN", "8080/tcp                   ALLOW IN"
    )
    with pytest.raises(AssertionError, match="8080/tcp"):
        services.test_ufw_declared_ports(_state({"ufw": opened.splitlines()}), settings)


HEALTHY = {
    "ufw": UFW.splitlines(),
    "ufw-conf": ["ENABLED=yes"],
    "units": [
        "ufw enabled active",
        "apt-daily.timer enabled active",
        "apt-daily-upgrade.timer enabled active",
        "apt-daily-upgrade.service static inactive",
        "ntp enabled active",
        "ntpsec enabled active",
    ],
    "packages": ["ii  unattended-upgrades"],
    "apt-config": [
        'APT::Periodic::Update-Package-Lists "1";',
        'APT::Periodic::Unattended-Upgrade "1";',
    ],
    "fail2ban": [
        "running: yes",
        "jails: sshd",
        "journalmatch: [['_SYSTEMD_UNIT=sshd.service', '+', '_COMM=sshd']]",
        "actions: ufw",
        "port: 22",
        "ignoreip: 127.0.0.0/8 ::1 10.0.2.2",
    ],
    "time": ["1764800000.5", "NTP=yes", "NTPSynchronized=yes"],
}


def _recorded(part: str = "", old: str = "", new: str = "") -> HostState:
    """HEALTHY as read from a host, with `old` replaced by `new` (lines may split) in `part`."""
    raw = {k: list(v) for k, v in HEALTHY.items()}
    if part:
        raw[part] = "\n".join(raw[part]).replace(old, new).splitlines()
        assert raw[part] != HEALTHY[part]
    state = _state(raw)
    state.read_at = state.read_done = float(HEALTHY["time"][0])  # the clocks agree
    return state


@pytest.mark.parametrize(
    ("control", "part", "old", "new", "message"),
    [
        # A hand edit leaves the live chains loaded: only the file tells the next boot's state.
        ("ufw_active", "ufw-conf", "yes", "no", r"ENABLED=no: ufw loads no rules at the next boot"),
        ("updates_unattended", "apt-config", 'Update-Package-Lists "1"',
         'Update-Package-Lists "1";\nAPT::Periodic::Enable "0"', r"Enable is 0"),
        ("updates_unattended", "units", "apt-daily-upgrade.service static",
         "apt-daily-upgrade.service masked", r"apt-daily-upgrade\.service is masked"),
        ("fail2ban_sshd_jail", "fail2ban", "10.0.2.2", "10.0.2.2 0.0.0.0/0",
         r"ignores 0\.0\.0\.0/0: every address"),
        ("time_sync", "units", "ntp enabled active", "chrony enabled active",
         r"time sync daemons running: \['chrony', 'ntpsec'\]"),
    ],
)  # fmt: skip
def test_services_controls_catch_what_they_claim(
    control: str, part: str, old: str, new: str, message: str
) -> None:
    settings = HardenSettings()
    run = getattr(services, f"test_{control}")
    args = (settings,) if "expected" in inspect.signature(run).parameters else ()
    run(_recorded(), *args)  # healthy: passes
    with pytest.raises(AssertionError, match=message):
        run(_recorded(part, old, new), *args)


SSHD_CONFIG_WITH_MATCHES = """Port 22
Match User deploy
    AllowTcpForwarding yes
Match Address 10.0.0.0/8,!10.1.2.3,192.168.1.*
    PermitRootLogin yes
match localaddress fe80::1 User root
    PasswordAuthentication yes
Match Address example.com
    PermitRootLogin yes
"""


def test_each_address_a_match_block_names_gets_its_own_sshd_t(tmp_path: Path) -> None:
    # sshd itself is not on this machine: a stand-in prints the connection spec it was given,
    # so this checks the shell and awk plumbing; the lab runs the real sshd -T (test_verify).
    (tmp_path / "sshd_config").write_text(SSHD_CONFIG_WITH_MATCHES)
    (tmp_path / "sshd").write_text('#!/bin/sh\necho "spec $3"\n')
    (tmp_path / "sshd").chmod(0o755)
    command = snapshot_command({"sshd-match": match_contexts_command()}).replace(
        "/etc/ssh/sshd_config", str(tmp_path / "sshd_config")
    )
    done = subprocess.run(
        ["sh", "-c", command], env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert split_snapshot(done.stdout) == {
        "sshd-match": [],
        "sshd:root@addr=10.0.0.0": ["spec user=root,host=bulwark-verify,addr=10.0.0.0"],
        "sshd:root@addr=192.168.1.1": ["spec user=root,host=bulwark-verify,addr=192.168.1.1"],
        "sshd:root@laddr=fe80::1": [
            "spec user=root,host=bulwark-verify,addr=198.51.100.7,laddr=fe80::1"
        ],
    }


def test_a_match_block_by_address_that_lets_root_in_fails_the_control() -> None:
    state = _state({
        "sshd:root": SSHD_T.splitlines(),
        "sshd:deploy": SSHD_T.splitlines(),
        "sshd:bulwark-nobody": SSHD_T.splitlines(),
        "sshd:root@addr=10.0.0.0": SSHD_T.replace("permitrootlogin no", "permitrootlogin yes")
        .splitlines(),
    })  # fmt: skip
    root_login = next(w for m, w in ssh_controls.PER_USER if m.args[0] == "ssh-permit-root-login")
    with pytest.raises(AssertionError) as caught:
        ssh_controls.test_sshd_per_user(state, root_login)
    assert str(caught.value).splitlines()[0] == (
        "user=root@addr=10.0.0.0: sshd -T permitrootlogin yes (want no)"
    )


SS = """udp   UNCONN 0      0         0.0.0.0:68      0.0.0.0:*    users:(("dhclient",pid=301,fd=7))
tcp   LISTEN 0      128          0.0.0.0:22         0.0.0.0:*    users:(("sshd",pid=512,fd=3))
tcp   LISTEN 0      128             [::]:22            [::]:*    users:(("sshd",pid=512,fd=4))
tcp   LISTEN 0      4096       127.0.0.1:5432       0.0.0.0:*    users:(("postgres",pid=9,fd=6))
"""


@pytest.mark.parametrize(
    ("listing", "message"),
    [
        (SS, None),
        (SS + 'tcp   LISTEN 0 5 0.0.0.0:9999 0.0.0.0:* users:(("python3",pid=7,fd=3))\n',
         r"listening: tcp 0\.0\.0\.0:9999 \(python3\)"),
        # `ss` missing or failing: no output at all must not read as "nothing unexpected"
        ("", r"could not be read .* no sshd on :22"),
    ],
)  # fmt: skip
def test_listeners_need_a_real_listing(listing: str, message: str | None) -> None:
    state = _state({"listen": listing.splitlines()})
    if message is None:
        os_controls.test_listeners(state, HardenSettings())
        return
    with pytest.raises(AssertionError, match=message):
        os_controls.test_listeners(state, HardenSettings())


def test_the_snapshot_reads_every_part_in_the_c_locale() -> None:
    command = snapshot_command({"ufw": "ufw status verbose"})
    done = subprocess.run(
        ["sh", "-c", command.replace("ufw status verbose", "echo $LC_ALL:$LANGUAGE")],
        env={**os.environ, "LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8", "LANGUAGE": "de"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert split_snapshot(done.stdout) == {"ufw": ["C:"]}


DEBIAN = {"id": "Debian", "codename": "bookworm"}
DEBIAN_SECURITY = {"v": "12", "o": "Debian", "a": "stable-security", "n": "bookworm-security"}
DEBIAN_SECURITY |= {"l": "Debian-Security", "c": "main"}
UBUNTU = {"id": "Ubuntu", "codename": "noble"}
UBUNTU_SECURITY = {"o": "Ubuntu", "a": "noble-security", "n": "noble", "l": "Ubuntu"}


def test_debian_origins_pattern_matches_the_security_archive() -> None:
    pattern = "origin=Debian,codename=${distro_codename}-security,label=Debian-Security"
    assert origin_matches(pattern, DEBIAN_SECURITY, DEBIAN)
    assert not origin_matches("origin=Debian,codename=bookworm-updates", DEBIAN_SECURITY, DEBIAN)


def test_ubuntu_style_origins_match_nothing_on_debian() -> None:
    line = "${distro_id}:${distro_codename}-security"
    assert not allowed_origin_matches(line, DEBIAN_SECURITY, DEBIAN)
    assert allowed_origin_matches(line, UBUNTU_SECURITY, UBUNTU)


def _result(status: str) -> ControlResult:
    return ControlResult(
        id="x-y",
        title="t",
        family="x",
        status=status,  # type: ignore[arg-type]
        rationale="r",
        references={"cis": None, "devsec": []},
    )


@pytest.mark.parametrize(
    ("statuses", "ok"),
    [
        (["pass", "not-applicable"], True),
        (["pass", "fail"], False),
        (["pass", "error"], False),
    ],
)
def test_host_ok_only_when_everything_applicable_passes(statuses: list[str], ok: bool) -> None:
    host = HostResult(host="h", controls=[_result(s) for s in statuses])
    assert host.ok is ok
    assert Report(hosts=[host]).ok is ok


def test_report_json_round_trip(tmp_path: Path) -> None:
    report = Report(hosts=[HostResult(host="h", controls=[_result("fail")])])
    report.write(tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert '"schema": "bulwark.verify/v1"' in text
    assert '"summary"' in text
    assert Report.read(tmp_path / "r.json").hosts[0].summary["fail"] == 1


def test_an_empty_report_is_not_ok() -> None:
    assert not Report().ok


def test_junit_has_every_control_of_every_host_trust_included() -> None:
    controls = [_result(status) for status in ("pass", "fail", "not-applicable", "error")]
    junit = Report(hosts=[HostResult(host="web1", controls=controls)]).to_junit()
    xml = ET.fromstring(junit)  # noqa: S314 - our own output
    (suite,) = xml.iter("testsuite")
    assert suite.attrib | {"time": "", "timestamp": ""} == {
        "name": "web1", "tests": "4", "failures": "1", "errors": "1", "skipped": "1",
        "time": "", "timestamp": "",
    }  # fmt: skip
    kinds = [[child.tag for child in case] for case in suite.iter("testcase")]
    assert kinds == [[], ["failure"], ["skipped"], ["error"]]


def test_a_trusted_host_with_no_control_result_is_an_error() -> None:
    target = run.VerifyTarget("web1", "203.0.113.7", 22, "deploy", None, Path("kh"))
    report = Report(hosts=[HostResult(host="web1", controls=[_result("pass")])])
    with pytest.raises(BulwarkError, match=r"web1: no control ran .-k 'typo' selects none."):
        run._merge(report, Report(), {"h0": target}, "typo")


def test_ssh_config_pins_keys_and_multiplexes_as_openssh_reads_it(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("")
    (tmp_path / "known_hosts").write_text("")
    target = run.VerifyTarget(
        alias="web1",
        hostname="host.example",
        port=2222,
        user="deploy",
        key=tmp_path / "id",
        known_hosts=tmp_path / "known_hosts",
        address="203.0.113.9",
    )
    config = tmp_path / "ssh_config"
    config.write_text(run.ssh_config({"h0": target}, tmp_path))
    seen = openssh_reads(config, "h0")
    assert seen["hostname"] == "203.0.113.9"  # the vetted address, not the name again
    assert seen["hostkeyalias"] == "[host.example]:2222"  # where bootstrap pinned the key
    assert (seen["port"], seen["user"]) == ("2222", "deploy")
    assert seen["stricthostkeychecking"] == "true"
    assert seen["batchmode"] == "yes"
    assert seen["passwordauthentication"] == "no"
    assert seen["controlmaster"] == "auto"
    assert seen["identitiesonly"] == "yes"
    # Only links in bulwark's own folder reach the file: no user path is parsed by OpenSSH.
    assert Path(seen["identityfile"]).resolve() == (tmp_path / "id").resolve()
    assert Path(seen["identityfile"]).parent == tmp_path
    assert Path(seen["userknownhostsfile"]).resolve() == (tmp_path / "known_hosts").resolve()


@pytest.mark.parametrize(
    ("spec", "message"),
    [("example.org", "user@host"), ("root@h:twenty", "not a port"), ("@h", "user@host")],
)
def test_bad_target_names_the_fix(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run.from_spec(spec, key=None, known_hosts=Path("k"))


def test_target_spec_defaults() -> None:
    target = run.from_spec("root@203.0.113.9", key=None, known_hosts=Path("k"))
    assert (target.user, target.hostname, target.port) == ("root", "203.0.113.9", 22)
    assert target.settings["deploy_user"] == "deploy"


def test_fail2ban_query_output() -> None:
    lines = [
        "running: yes",
        "jails: recidive, sshd",
        "journalmatch: [['_SYSTEMD_UNIT=sshd.service', '+', '_COMM=sshd']]",
        "actions: ufw",
        "port: 22",
        "ignoreip: 127.0.0.0/8 ::1 10.0.2.2",
    ]
    f2b = parse_fail2ban(lines)
    assert f2b["jails"] == "recidive, sshd"
    assert f2b["port"] == "22"
    assert "_COMM=sshd" in f2b["journalmatch"]


SYSTEMCTL_SHOW = """LoadState=loaded
ActiveState=active
UnitFileState=enabled

LoadState=not-found
ActiveState=inactive
UnitFileState=

LoadState=masked
ActiveState=inactive
UnitFileState=masked
"""


def test_units_one_systemctl_show_becomes_name_state_lines() -> None:
    """The snapshot's one `systemctl show` for all units, through its awk program, reads as
    `systemctl is-enabled` / `is-active` would (absent when the unit does not exist)."""
    done = subprocess.run(
        ["awk", "-v", "names=fail2ban chrony ntp", UNITS_AWK],
        input=SYSTEMCTL_SHOW,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "fail2ban enabled active",
        "chrony absent inactive",
        "ntp masked inactive",
    ]


def test_userlist_secrets_are_classified_on_the_host_and_never_copied(tmp_path: Path) -> None:
    userlist = tmp_path / "userlist.txt"
    userlist.write_text(
        '"app" "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2VydmVy"\n'
        '"old" "md50123456789abcdef0123456789abcdef"\n'
        '"bad" "hunter2-plain"\n'
    )
    command = snapshot_parts(["root"])["pgbouncer-users"].replace(
        "/etc/pgbouncer/userlist.txt", str(userlist)
    )
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["app scram", "old md5", "bad plain"]
    assert "hunter2" not in out


@pytest.mark.parametrize(
    "printed",
    [
        "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024",
        "OpenSSH_9.2, OpenSSL 3.0.15 3 Sep 2024",  # sshd's usage text on an unknown flag
    ],
)
def test_sshd_version_is_read_from_either_form(printed: str) -> None:
    ssh_controls.test_modern_openssh(_state({"openssh": [printed]}))
    with pytest.raises(AssertionError, match=r"sshd is OpenSSH_7\.4"):
        ssh_controls.test_modern_openssh(_state({"openssh": ["OpenSSH_7.4p1, OpenSSL 1.0"]}))


def _core(limits: list[str]) -> HostState:
    return _state(
        {"limits": limits, "coredump": ["[Coredump]", "Storage=none", "ProcessSizeMax=0"]}
    )


def test_core_dump_limits_are_judged_as_pam_limits_reads_them() -> None:
    debian13 = ["*  soft core 0", "root soft core 0", "*  hard core infinity",
                "root hard core infinity"]  # fmt: skip
    # The file that sorts later wins, for root too: then no one may dump core.
    kernel.test_core_dumps(_core([*debian13, "* hard core 0", "root hard core 0"]))
    # `*` never covers root in pam_limits.
    with pytest.raises(AssertionError, match="root's hard core limit is infinity"):
        kernel.test_core_dumps(_core([*debian13, "* hard core 0"]))
    with pytest.raises(AssertionError, match="Storage=external"):
        kernel.test_core_dumps(
            _state({"limits": ["* hard core 0", "root hard core 0"],
                    "coredump": ["Storage=none", "ProcessSizeMax=0", "Storage=external"]})
        )  # fmt: skip


PROC_OK = {
    "mounts": ["proc /proc proc rw,nosuid,nodev,noexec,relatime,gid=996,hidepid=invisible 0 0"],
    "fstab-proc": [
        "proc /proc proc rw,nosuid,nodev,noexec,relatime,hidepid=invisible,gid=proc 0 0"
    ],
    "group": ["root:x:0:", "proc:x:996:"],
    "proc-viewers": ["systemd-logind.service  996"],
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"proc-viewers": []}, None),  # neither running: nothing to exempt
        ({"mounts": ["proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0"]},
         r"no hidepid.*exempts gid \(none\)"),
        ({"mounts": ["proc /proc proc rw,relatime,gid=996,hidepid=2 0 0"]},
         "lacks nodev,noexec,nosuid"),
        ({"mounts": ["proc /proc proc rw,nosuid,nodev,noexec,gid=0,hidepid=invisible 0 0"]},
         "exempts gid 0, not proc's 996"),
        ({"group": ["root:x:0:"]}, "there is no group proc"),
        ({"fstab-proc": []}, r"at the next boot /proc shows every process"),
        ({"fstab-proc": ["proc /proc proc defaults 0 0"]}, "at the next boot"),
        ({"proc-viewers": ["systemd-logind.service "]},
         "systemd-logind.service runs without the group proc"),
        ({"proc-viewers": ["systemd-logind.service 996", "polkit.service 9960"]},
         "polkit.service runs without the group proc"),
    ],
    ids=["hidden", "no-viewers", "not-hidden", "flags-lost", "wrong-gid", "no-group",
         "no-fstab-line", "fstab-without-hidepid", "logind-no-groups", "polkit-lookalike-gid"],
)  # fmt: skip
def test_the_proc_control_needs_hidepid_now_and_at_boot_and_the_viewers_exempt(
    change: dict[str, list[str]], problem: str | None
) -> None:
    state = _state({**PROC_OK, **change})
    if problem is None:
        kernel.test_proc_hides_processes(state, HardenSettings())
    else:
        with pytest.raises(AssertionError, match=problem):
            kernel.test_proc_hides_processes(state, HardenSettings())


def test_the_proc_control_is_not_applicable_when_declared_off() -> None:
    off = HardenSettings.model_validate({"kernel": {"hide_processes": False}})
    with pytest.raises(pytest.skip.Exception, match=r"kernel\.hide_processes"):
        kernel.test_proc_hides_processes(_state({}), off)


def fake_ssh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: list[tuple[int, str]]
) -> Path:
    """An `ssh` on PATH that answers each call with the next (exit, stderr) OpenSSH gives."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for i, (_code, said) in enumerate(answers):
        (bin_dir / f"answer{i}").write_text(said)
    script = bin_dir / "ssh"
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{bin_dir}/count" 2>/dev/null || echo 0); echo $((n + 1)) > "{bin_dir}/count"\n'
        f'cat "{bin_dir}/answer$n" >&2\n'
        f"case $n in {' '.join(f'{i}) exit {c};;' for i, (c, _) in enumerate(answers))} esac\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(run, "TRUST_RETRY_PAUSES", (0.0,))
    return bin_dir / "count"


REFUSED = "ssh: connect to host 203.0.113.9 port 22: Connection refused\n"
BANNER = (
    "Connection timed out during banner exchange\nConnection to 203.0.113.9 port 22 timed out\n"
)


@pytest.mark.parametrize(
    ("answers", "status", "calls", "says"),
    [
        ([(0, "")], "pass", 1, None),
        ([(255, "Host key verification failed.\n")], "fail", 1, "Host key verification failed"),
        ([(255, "@@@@@\n@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\n")], "fail", 1,
         "REMOTE HOST IDENTIFICATION HAS CHANGED"),
        ([(255, REFUSED), (0, "")], "pass", 2, None),  # the rate limit's window passed
        ([(255, REFUSED), (255, REFUSED)], "error", 2, "cannot reach 203.0.113.9 over SSH"),
        ([(255, BANNER), (255, BANNER)], "error", 2, "possibly|banned by fail2ban"),
        ([(255, "deploy@203.0.113.9: Permission denied (publickey).\n")], "error", 1,
         "refused the login"),
    ],
)  # fmt: skip
def test_only_a_key_problem_fails_the_trust_control(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answers: list[tuple[int, str]],
    status: str,
    calls: int,
    says: str | None,
) -> None:
    count = fake_ssh(tmp_path, monkeypatch, answers)
    target = run.VerifyTarget("web1", "203.0.113.9", 22, "deploy", None, tmp_path / "kh")
    result = run.check_trust(target, "h0", tmp_path / "ssh_config")
    assert result.status == status
    assert int(count.read_text()) == calls
    text = result.evidence if status == "fail" else result.reason
    if says is None:
        assert text is None
    else:
        assert text is not None
        assert re.search(says, text), text


AIDE_PACKAGES = ["ii  aide"]


@pytest.mark.parametrize(
    ("units", "aide", "failure"),
    [
        (["bulwark-aide-check.timer enabled active", "bulwark-aide-init static inactive"],
         ["/var/lib/aide/aide.db", "Checksums = sha512"], None),
        (["bulwark-aide-check.timer enabled active", "bulwark-aide-init static active"],
         ["Checksums = sha512"], None),
        (["bulwark-aide-check.timer enabled active", "bulwark-aide-init absent"],
         ["Checksums = sha512"], "is not building one"),
        (["bulwark-aide-check.timer enabled active"],
         ["/var/lib/aide/aide.db", "Checksums = H"], "want sha512"),
        (["bulwark-aide-check.timer disabled inactive"],
         ["/var/lib/aide/aide.db", "Checksums = sha512"], "bulwark-aide-check.timer is disabled"),
    ],
    ids=["built", "building", "none", "weak-checksums", "no-daily-check"],
)  # fmt: skip
def test_the_file_integrity_control_accepts_a_baseline_being_built_and_nothing_less(
    units: list[str], aide: list[str], failure: str | None
) -> None:
    state = _state({"units": units, "aide": aide, "packages": AIDE_PACKAGES})
    if failure is None:
        accounts.test_file_integrity(state, HardenSettings())
    else:
        with pytest.raises(AssertionError, match=failure):
            accounts.test_file_integrity(state, HardenSettings())


@pytest.mark.parametrize(("failures", "seconds"), [(0, 120), (12, 120), (30, 157), (500, 607)])
def test_the_ban_probe_waits_out_sshds_own_penalty_for_what_it_sent(
    failures: int, seconds: float
) -> None:
    # OpenSSH >= 9.8 refuses a source for 5 s per failed login (at most 600 s) on top of the
    # ban: a probe that needed many rounds on a slow host must wait that long after the unban.
    assert ban_probe.readmit_seconds(failures) == seconds
