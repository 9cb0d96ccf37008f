"""bulwark verify without a host: control catalogue, parsers on recorded output, results, the
runner's SSH config and target parsing."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
from pathlib import Path

import pytest

import bulwark.verify.suite
from bulwark.errors import ConfigError
from bulwark.verify import run
from bulwark.verify.controls import CONTROLS
from bulwark.verify.results import ControlResult, HostResult, Report
from bulwark.verify.state import (
    UNITS_AWK,
    clock_offset,
    parse_fail2ban,
    parse_sshd_t,
    parse_ufw,
    snapshot_command,
    snapshot_parts,
    split_snapshot,
)
from bulwark.verify.suite.test_services import allowed_origin_matches, origin_matches

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


def test_controls_have_stable_ids_and_say_why() -> None:
    assert len(CONTROLS) >= 100
    for cid, control in CONTROLS.items():
        assert cid == cid.lower()
        assert " " not in cid
        assert control.title
        assert control.rationale
        assert control.family == cid.split("-")[0]


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


def test_the_clock_is_read_first_in_the_snapshot() -> None:
    assert next(iter(snapshot_parts(["root"]))) == "time"


UFW = """Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
22/tcp                     LIMIT IN    Anywhere
5432/tcp                   ALLOW IN    10.0.0.0/8
22/tcp (v6)                LIMIT IN    Anywhere (v6)
"""


def test_ufw_status_table() -> None:
    state = parse_ufw(UFW.splitlines())
    assert state["active"]
    assert (state["incoming"], state["outgoing"]) == ("deny", "allow")
    rules = [(r.to, r.action, r.source, r.v6) for r in state["rules"]]
    assert rules == [
        ("22/tcp", "LIMIT IN", "Anywhere", False),
        ("5432/tcp", "ALLOW IN", "10.0.0.0/8", False),
        ("22/tcp", "LIMIT IN", "Anywhere", True),
    ]


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


def test_ssh_config_pins_keys_and_multiplexes(tmp_path: Path) -> None:
    target = run.VerifyTarget(
        alias="web1",
        hostname="203.0.113.9",
        port=2222,
        user="deploy",
        key=tmp_path / "id",
        known_hosts=tmp_path / "known_hosts",
    )
    config = run.ssh_config([target], tmp_path)
    assert "StrictHostKeyChecking yes" in config
    assert f"UserKnownHostsFile {tmp_path / 'known_hosts'}" in config
    assert "ControlMaster auto" in config
    assert "PasswordAuthentication no" in config


@pytest.mark.parametrize(
    ("spec", "message"),
    [("example.org", "user@host"), ("root@h:twenty", "not a number"), ("@h", "user@host")],
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
