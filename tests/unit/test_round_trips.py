"""Operations that do their work in one remote command: what they run, run through sh on real
files (and stand-in programs), does what pyinfra's several commands did."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import OperationError
from pyinfra.operations import files

from bulwark.hosts import operations
from bulwark.hosts.deploys import fail2ban, firewall, harden, kernel
from bulwark.hosts.facts import (
    SECTION,
    MountStates,
    PathModes,
    ProcExemption,
    ProcExemptions,
    UnitStates,
    fact_key,
)
from tests.unit.fakes import FakeHost, sh, stub_programs

FSTAB = """\
# /etc/fstab: static file system information.
# tmpfs /tmp tmpfs defaults 0 0
UUID=1234 / ext4 errors=remount-ro 0 1
tmpfs /tmp tmpfs defaults 0 0
tmpfs /tmp tmpfs size=10% 0 0
"""
TMP_LINE = kernel.tmpfs_line("/tmp", "25%")


def fstab_edit(path: Path, line: str, mount_point: str) -> str:
    command = operations.only_line("/etc/fstab", line, kernel.FSTAB_ENTRY, key=mount_point)
    return command.replace("/etc/fstab", str(path))


def test_an_fstab_entry_is_replaced_in_place_its_duplicates_dropped_comments_kept(
    tmp_path: Path,
) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text(FSTAB)
    fstab.chmod(0o640)
    done = sh(fstab_edit(fstab, TMP_LINE, "/tmp"))
    assert done.returncode == 0, done.stderr
    lines = fstab.read_text().splitlines()
    assert lines == [
        "# /etc/fstab: static file system information.",
        "# tmpfs /tmp tmpfs defaults 0 0",
        "UUID=1234 / ext4 errors=remount-ro 0 1",
        TMP_LINE,
    ]
    assert stat.S_IMODE(fstab.stat().st_mode) == 0o640, "the file keeps its mode"
    assert not (tmp_path / "fstab.bulwark-new").exists()
    before = fstab.read_text()
    assert sh(fstab_edit(fstab, TMP_LINE, "/tmp")).returncode == 0
    assert fstab.read_text() == before, "a second run changes nothing"


def test_an_fstab_entry_is_appended_when_there_is_none(tmp_path: Path) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text(FSTAB)
    line = kernel.tmpfs_line("/dev/shm", "25%")
    assert sh(fstab_edit(fstab, line, "/dev/shm")).returncode == 0
    assert fstab.read_text() == FSTAB + line + "\n"


def test_a_line_set_by_pattern_reads_the_line_and_shell_characters_stay_literal(
    tmp_path: Path,
) -> None:
    conf = tmp_path / "ufw"
    conf.write_text('IPV6=no\nDEFAULT_INPUT_POLICY="DROP"\nIPV6=no\n')
    line = "IPV6=yes # $(touch pwned) `x` \\t 'q'"
    done = sh(operations.only_line(str(conf), line, '$0 ~ ENVIRON["BULWARK_KEY"]', key="^IPV6="))
    assert done.returncode == 0, done.stderr
    assert conf.read_text() == f'{line}\nDEFAULT_INPUT_POLICY="DROP"\n'
    assert not Path("pwned").exists()


def test_a_line_for_a_missing_file_creates_it_as_files_line_does(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    done = sh(operations.only_line(str(missing), "A=1", '$0 ~ ENVIRON["BULWARK_KEY"]', key="^A="))
    assert done.returncode == 0, done.stderr
    assert missing.read_text() == "A=1\n"


def test_the_diff_regex_selects_the_fstab_lines_the_awk_condition_does(tmp_path: Path) -> None:
    # Under --diff, pyinfra's files.line (grep -E, sed -E) edits fstab instead of only_line: a
    # regex that matched nothing would append a second /tmp entry (the first one wins at boot).
    fstab = tmp_path / "fstab"
    fstab.write_text(FSTAB + "#tmpfs /tmp tmpfs defaults 0 0\n  tmpfs\t/tmp\ttmpfs x 0 0\n"
                     "tmpfs /tmpx tmpfs x 0 0\n  # x /tmp y\ntmpfs /tmp\n")  # fmt: skip
    for mount_point in ("/tmp", "/dev/shm"):
        grep = sh(f"grep -E {shlex.quote(kernel.fstab_regex(mount_point))} {fstab} || true")
        awk = sh(f"awk {shlex.quote(kernel.FSTAB_ENTRY)} {fstab}", BULWARK_KEY=mount_point)
        assert grep.stdout == awk.stdout
    assert len(awk.stdout.splitlines()) == 0
    assert len(grep.stdout.splitlines()) == 0
    tmp = sh(f"awk {shlex.quote(kernel.FSTAB_ENTRY)} {fstab}", BULWARK_KEY="/tmp")
    assert len(tmp.stdout.splitlines()) == 4


def test_under_diff_lines_go_through_files_line_with_extended_regexes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeHost([])
    fake.state.config.DIFF = True
    monkeypatch.setattr(operations, "host", fake)
    calls: list[dict[str, Any]] = []

    def line(**kwargs: Any) -> Iterator[str]:
        calls.append(kwargs)
        yield "x"

    monkeypatch.setattr(files.line, "_inner", line)
    assert list(operations.line_in("/etc/fstab", "l", kernel.FSTAB_ENTRY, key="/tmp",
                                   regex=kernel.fstab_regex("/tmp"))) == ["x"]  # fmt: skip
    assert calls == [{"path": "/etc/fstab", "line": kernel.fstab_regex("/tmp"),
                      "replace": "l", "extended_regex": True}]  # fmt: skip


def test_fstab_as_edited_reads_back_as_wanted_and_needs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only_line's edit, read back by the fact the operation asks (MountStates, through sh):
    # the next run changes nothing.
    fstab, mounts = tmp_path / "fstab", tmp_path / "mounts"
    fstab.write_text(FSTAB)
    for mount_point in kernel.TMPFS_PATHS:
        assert (
            sh(fstab_edit(fstab, kernel.tmpfs_line(mount_point, "25%"), mount_point)).returncode
            == 0
        )
    mounts.write_text("".join(f"tmpfs {p} tmpfs rw,nosuid,nodev,noexec,relatime 0 0\n"
                              for p in kernel.TMPFS_PATHS))  # fmt: skip
    command = MountStates().command(paths=list(kernel.TMPFS_PATHS))
    read = sh(command.replace("/etc/fstab", str(fstab)).replace("/proc/mounts", str(mounts)))
    fake = FakeHost(read.stdout.splitlines())
    monkeypatch.setattr(kernel, "host", fake)
    monkeypatch.setattr(operations, "host", fake)
    assert list(kernel.hardened_tmpfs._inner(paths=list(kernel.TMPFS_PATHS), size="25%")) == []
    assert fake.noops == ["/tmp and /dev/shm are mounted nodev,nosuid,noexec"]


def run_units(monkeypatch: pytest.MonkeyPatch, states: list[str], units: list[str]) -> list[str]:
    monkeypatch.setattr(operations, "host", FakeHost(states))
    operations._read_once.clear()
    return list(operations.units_running._inner(units=units))


def test_units_already_enabled_are_only_started_in_the_same_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What UnitStates prints on the first run: the packages enabled their units; bulwark's own
    # timer is new; auditd already runs.
    states = ["sysstat.service enabled inactive", "bulwark-aide-check.timer - inactive",
              "auditd.service enabled active", "chkrootkit.timer static inactive"]  # fmt: skip
    units = [line.split()[0] for line in states]
    assert UnitStates().process(states)["chkrootkit.timer"] == (True, False)
    assert run_units(monkeypatch, states, units) == [
        "systemctl enable --now bulwark-aide-check.timer && "
        "systemctl start sysstat.service chkrootkit.timer"
    ]


def test_units_enabled_and_active_need_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_units(monkeypatch, ["acct.service enabled active"], ["acct.service"]) == []


def test_permissions_are_one_command_that_runs_every_item_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through sh with stand-in programs: paths already right or absent are left out, and a
    # failing dpkg-statoverride (no override database) falls back to chmod while the items after
    # it still run (the `{ ...; }` group keeps its `||` from swallowing the `&&` chain).
    log = tmp_path / "calls"
    stub_programs(tmp_path, log, chown=0, chmod=0, dpkg_statoverride=2)
    output = ["/usr/bin/at 4755:root:root", "/etc/crontab 644:root:root", "/etc/issue -",
              "/etc/cron.daily 700:root:root", "/etc/cron.d 755:root:root"]  # fmt: skip
    monkeypatch.setattr(operations, "host", FakeHost(output))
    (command,) = operations.permissions._inner(
        root_only={"/etc/crontab": "600", "/etc/issue": "600", "/etc/cron.daily": "700",
                   "/etc/cron.d": "700"},
        no_setuid=["/usr/bin/at"],
    )  # fmt: skip
    done = sh(command, path_first=tmp_path)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "chown root:root /etc/crontab",
        "chmod 600 /etc/crontab",
        "chown root:root /etc/cron.d",
        "chmod 700 /etc/cron.d",
        "dpkg-statoverride --update --force-statoverride-add --add root root 0755 /usr/bin/at",
        "chmod u-s,g-s /usr/bin/at",
    ]


def test_a_unit_enabled_only_until_reboot_is_enabled_for_good() -> None:
    states = UnitStates().process(["a.service enabled-runtime active", "b.timer static active"])
    assert states == {"a.service": (False, True), "b.timer": (True, True)}


@pytest.mark.parametrize(("enabled", "calls"), [
    (True, ["is-enabled --quiet fail2ban", "restart fail2ban"]),
    (False, ["is-enabled --quiet fail2ban", "enable --quiet fail2ban", "restart fail2ban"]),
])  # fmt: skip
def test_fail2ban_is_enabled_only_when_it_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enabled: bool, calls: list[str]
) -> None:
    # `systemctl enable` reloads systemd and runs update-rc.d for fail2ban's init script: six
    # seconds on a small host, for a unit its package enabled already.
    log = tmp_path / "calls"
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(
        f'#!/bin/sh\necho "$*" >> {log}\n'
        f'[ "$1" = is-enabled ] && exit {0 if enabled else 1}\nexit 0\n'
    )
    systemctl.chmod(0o755)
    # jail.local in place, fail2ban not running: the operation heals it (restart, check).
    sha1 = hashlib.sha1(b"[sshd]\n", usedforsecurity=False).hexdigest()
    fake = FakeHost([f"{SECTION}sha1", sha1, f"{SECTION}jails", "not running"])
    monkeypatch.setattr(fail2ban, "host", fake)
    monkeypatch.setattr(operations, "host", fake)
    cmds = list(fail2ban.jail_config._inner(content="[sshd]\n", jails=["sshd"]))
    restart = next(str(c) for c in cmds if "restart fail2ban" in str(c))
    done = sh(restart, path_first=tmp_path)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == calls


def test_debconf_answers_reach_debconf_before_apt_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sysstat answered "collect" before its install: its script then leaves its units enabled
    # instead of disabling them for bulwark to enable again.
    monkeypatch.setattr(operations, "host", FakeHost([]))  # never upgraded: no stamp
    (command,) = [
        str(c)
        for c in operations.first_run_upgrade._inner(
            packages=["sysstat"], preseed=("sysstat sysstat/enable boolean true",)
        )
    ]
    log = tmp_path / "calls"
    stub_programs(tmp_path, log, apt_get=0, touch=0, install=0)
    (tmp_path / "debconf-set-selections").write_text(f"#!/bin/sh\ncat >> {log}\n")
    (tmp_path / "debconf-set-selections").chmod(0o755)
    done = sh(command, path_first=tmp_path)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "sysstat sysstat/enable boolean true"
    assert calls[1] == "apt-get update"


@pytest.mark.parametrize(("state", "wanted"), [
    ("700:deploy:deploy", []),
    ("755:root:root", ["mkdir -p /var/lib/bulwark/tmp && chown deploy:deploy /var/lib/bulwark/tmp"
                       " && chmod 700 /var/lib/bulwark/tmp"]),
    ("-", ["mkdir -p /var/lib/bulwark/tmp && chown deploy:deploy /var/lib/bulwark/tmp"
           " && chmod 700 /var/lib/bulwark/tmp"]),
])  # fmt: skip
def test_the_upload_directory_is_made_private_in_one_command(
    monkeypatch: pytest.MonkeyPatch, state: str, wanted: list[str]
) -> None:
    fake = FakeHost([f"{operations.UPLOAD_DIR} {state}"])
    monkeypatch.setattr(harden, "host", fake)
    monkeypatch.setattr(operations, "host", fake)
    cmds = list(harden.upload_directory._inner(path=operations.UPLOAD_DIR, user="deploy"))
    assert cmds == wanted
    assert fake.noops == ([] if wanted else ["/var/lib/bulwark/tmp is deploy's alone"])
    # Asked exactly as the read-ahead reads it: a converged re-run never reads it alone.
    assert fact_key(PathModes, {"paths": [operations.UPLOAD_DIR]}) in harden.READ_AHEAD


FRESH_UFW = ['ENABLED=no', 'LOGLEVEL=low', 'DEFAULT_INPUT_POLICY="DROP"',
             'DEFAULT_OUTPUT_POLICY="ACCEPT"', "--added--", "ufw allow 8080/tcp",
             "ufw allow 22/tcp comment 'by Fail2Ban after 5 attempts against sshd'"]  # fmt: skip


def test_ufw_allows_ssh_before_it_enables_in_one_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh host: an undeclared rule, a fail2ban ban (kept), inactive. The SSH rule comes
    # first and `&&` keeps a failed rule from reaching the enable: the classic lockout.
    fake = FakeHost(FRESH_UFW)
    monkeypatch.setattr(firewall, "host", fake)
    monkeypatch.setattr(operations, "host", fake)
    rules = ["limit 22/tcp", "allow from 10.0.0.0/8 to any port 6432 proto tcp"]
    (command,) = firewall.ufw_rules._inner(rules=rules, logging="low")
    assert command.split(" && ") == [
        "ufw limit 22/tcp",
        "ufw allow from 10.0.0.0/8 to any port 6432 proto tcp",
        "ufw delete allow 8080/tcp",
        "ufw --force enable",
    ]


def test_ufw_as_declared_needs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHost(["ENABLED=yes", "LOADED=yes", *FRESH_UFW[1:5], "ufw limit 22/tcp"])
    monkeypatch.setattr(firewall, "host", fake)
    monkeypatch.setattr(operations, "host", fake)
    assert list(firewall.ufw_rules._inner(rules=["limit 22/tcp"], logging="low")) == []
    assert fake.noops == ["ufw is active with exactly 1 declared rules"]


@pytest.mark.parametrize(
    "listed",
    [
        "allow 80/tcp comment 'web; $(touch {marker})'",
        "allow 80/tcp comment 'web `touch {marker}`'",
        "allow 80/tcp comment 'web' ; touch {marker}",
        "allow 80/tcp comment 'web' && touch {marker} #",
    ],
)
def test_ufw_delete_keeps_listed_text_out_of_the_shell(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, listed: str
) -> None:
    # `ufw show added` prints rules as shell words, comments quoted; whatever a comment (or a
    # tampered rules file) holds must reach ufw as its words, never run in root's shell.
    marker = tmp_path / "ran"
    rule = listed.format(marker=marker)
    fake = FakeHost(
        ["ENABLED=yes", "LOADED=yes", *FRESH_UFW[1:5], "ufw limit 22/tcp", f"ufw {rule}"]
    )
    monkeypatch.setattr(firewall, "host", fake)
    monkeypatch.setattr(operations, "host", fake)
    (command,) = firewall.ufw_rules._inner(rules=["limit 22/tcp"], logging="low")
    log = tmp_path / "log"
    stub_programs(tmp_path, log, ufw=0)
    done = sh(command, path_first=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    assert log.read_text(encoding="utf-8") == f"ufw delete {' '.join(shlex.split(rule))}\n"


def test_ufw_rule_that_cannot_be_read_back_stops_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeHost(["ENABLED=yes", "LOADED=yes", *FRESH_UFW[1:5], "ufw allow 80/tcp comment 'x"])
    monkeypatch.setattr(firewall, "host", fake)
    monkeypatch.setattr(operations, "host", fake)
    with pytest.raises(OperationError, match="ufw delete <number>"):
        list(firewall.ufw_rules._inner(rules=["limit 22/tcp"], logging="low"))


LOGIND = "systemd-logind.service"
EXEMPT = ProcExemption("996", {LOGIND: ("996",)})  # the group there, logind holding it


class ProcHost(FakeHost):
    """A host whose /proc mount is as MountStates' output says, whose drop-ins are in place as
    bulwark writes them (or absent), and whose exemptions are `exempt`."""

    def __init__(self, output: list[str], *, dropins: bool, exempt: ProcExemption) -> None:
        super().__init__(output)
        wanted = operations.ConfigFile(kernel.PROC_DROPINS[0], kernel.PROC_DROPIN).state
        self.files = {path: wanted if dropins else None for path in kernel.PROC_DROPINS}
        self.exempt = exempt

    def get_fact(self, cls: type[Any], **kwargs: Any) -> Any:
        if cls is MountStates:
            return super().get_fact(cls, **kwargs)
        if cls is ProcExemptions:
            return self.exempt
        return {path: self.files.get(path) for path in kwargs["paths"]}


def proc_commands(monkeypatch: pytest.MonkeyPatch, fake: ProcHost) -> list[str]:
    monkeypatch.setattr(kernel, "host", fake)
    monkeypatch.setattr(operations, "host", fake)
    monkeypatch.setattr(operations, "_read_once", {})

    def put(**kwargs: Any) -> Iterator[str]:
        yield f"upload {kwargs['dest']}"

    monkeypatch.setattr(files.put, "_inner", put)
    return [str(c) for c in kernel.hidden_processes._inner()]


def read_mounts(fstab: Path, live: str) -> list[str]:
    """MountStates for /proc as the host prints it, over `fstab` and a /proc/mounts of `live`."""
    mounts = fstab.parent / "mounts"
    mounts.write_text(live + "\n")
    command = MountStates().command(paths=["/proc"])
    read = sh(command.replace("/etc/fstab", str(fstab)).replace("/proc/mounts", str(mounts)))
    assert read.returncode == 0, read.stderr
    return read.stdout.splitlines()


SYSTEMD_PROC = "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0"
HIDDEN_PROC = "proc /proc proc rw,nosuid,nodev,noexec,relatime,gid=996,hidepid=invisible 0 0"


def test_proc_is_hidden_group_first_then_logind_exempt_then_fstab_then_remount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text(FSTAB + "proc /proc proc defaults 0 0\n")  # an old line of its own
    fresh = ProcExemption(None, {LOGIND: ()})  # no group yet; logind runs without it
    fake = ProcHost(read_mounts(fstab, SYSTEMD_PROC), dropins=False, exempt=fresh)
    group, *uploads, restart, edit, remount = proc_commands(monkeypatch, fake)
    # The group exists before logind restarts with it (a missing group keeps a unit down).
    assert group == "getent group proc >/dev/null || groupadd --system proc"
    assert uploads == [f"upload {path}" for path in kernel.PROC_DROPINS]
    assert restart == f"systemctl daemon-reload && systemctl restart {LOGIND}"
    # mount takes the options from fstab, as systemd-remount-fs does at boot.
    assert remount == kernel.PROC_REMOUNT
    # The edit, through sh: the old line replaced in place, the rest kept.
    assert sh(edit.replace("/etc/fstab", str(fstab))).returncode == 0
    assert fstab.read_text() == FSTAB + kernel.PROC_LINE + "\n"
    # Read back with the live mount the remount gives, drop-ins in place: nothing to do.
    done = ProcHost(read_mounts(fstab, HIDDEN_PROC), dropins=True, exempt=EXEMPT)
    assert proc_commands(monkeypatch, done) == []
    assert done.noops == ["/proc hides each user's processes from the others"]


@pytest.mark.parametrize(
    ("live", "dropins", "exempt", "wanted"),
    [
        # Remounted by hand without hidepid: the fstab line stands, only the remount runs.
        (SYSTEMD_PROC.replace("relatime", "relatime,gid=996"), True, EXEMPT,
         ["mount -o remount /proc"]),
        # hidepid kept but the flags lost (a remount with `defaults`).
        ("proc /proc proc rw,relatime,gid=996,hidepid=invisible 0 0", True, EXEMPT,
         ["mount -o remount /proc"]),
        # Another group exempted by hand.
        (HIDDEN_PROC.replace("gid=996", "gid=0"), True, EXEMPT, ["mount -o remount /proc"]),
        # A drop-in changed: logind restarts; the mount is left alone.
        (HIDDEN_PROC, False, EXEMPT,
         ["upload", "upload", f"systemctl daemon-reload && systemctl restart {LOGIND}"]),
        # A run cut off after the drop-ins, before the restart: logind still lacks the group.
        (HIDDEN_PROC, True, ProcExemption("996", {LOGIND: ("4",)}),
         [f"systemctl restart {LOGIND}"]),
        # polkit running without it too; a service that is not running is left alone.
        (HIDDEN_PROC, True, ProcExemption("996", {LOGIND: ("996",), "polkit.service": ()}),
         ["systemctl restart polkit.service"]),
    ],
    ids=["hidepid-lost", "flags-lost", "other-gid", "dropin-changed", "restart-missed",
         "polkit-without"],
)  # fmt: skip
def test_proc_mends_only_what_drifted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    live: str,
    dropins: bool,
    exempt: ProcExemption,
    wanted: list[str],
) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text(FSTAB + kernel.PROC_LINE + "\n")
    cmds = proc_commands(monkeypatch, ProcHost(read_mounts(fstab, live), dropins=dropins,
                                                exempt=exempt))  # fmt: skip
    assert len(cmds) == len(wanted), cmds
    for cmd, start in zip(cmds, wanted, strict=True):
        assert cmd.startswith(start), cmds


def test_the_exemption_fact_reads_the_group_and_what_running_services_hold() -> None:
    command = ProcExemptions().command()
    assert "getent group proc" in command
    out = [f"{SECTION}gid", "996", f"{SECTION}running", f"{LOGIND}  4 996", "polkit.service "]
    assert ProcExemptions().process(out) == ProcExemption(
        "996", {LOGIND: ("4", "996"), "polkit.service": ()}
    )
    assert ProcExemptions().process([f"{SECTION}gid", f"{SECTION}running"]) == ProcExemption()


def test_the_viewers_groups_are_read_from_the_running_main_process(tmp_path: Path) -> None:
    # logind's main process: one holding groups 4 and 27 (setpriv as root, else this test's own
    # process and its groups); polkit is not running.
    if os.geteuid() == 0 and shutil.which("setpriv"):
        wanted = {"4", "27"}
        main = subprocess.Popen(["setpriv", "--groups=4,27", "sleep", "60"])
    else:
        wanted = {str(g) for g in os.getgroups()}
        main = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "systemctl").write_text(
            f'#!/bin/sh\ncase "$*" in *systemd-logind*) echo {main.pid};; *) echo 0;; esac\n'
        )
        (tmp_path / "systemctl").chmod(0o755)
        comm = Path(f"/proc/{main.pid}/comm")
        deadline = time.monotonic() + 10
        while comm.read_text().strip() != "sleep":  # setpriv has set the groups and exec'd
            assert time.monotonic() < deadline
            time.sleep(0.01)
        command = ProcExemptions().command().replace("getent group proc", "echo proc:x:996:")
        read = sh(command, tmp_path)
    finally:
        main.kill()
        main.wait()
    assert read.returncode == 0, read.stderr
    found = ProcExemptions().process(read.stdout.splitlines())
    assert found == ProcExemption("996", {LOGIND: tuple(sorted(wanted, key=int))})


@pytest.mark.parametrize(
    ("status", "said"), [(0, ""), (32, "set bulwark.kernel.hide_processes: false")]
)
def test_a_host_that_cannot_remount_proc_stops_the_run_with_the_fix(
    tmp_path: Path, status: int, said: str
) -> None:
    # Through sh, with a stand-in mount: the one that refuses (a container's /proc) exits
    # non-zero and names the setting; the one that works says nothing.
    log = tmp_path / "log"
    stub_programs(tmp_path, log, mount=status)
    done = sh(kernel.PROC_REMOUNT, tmp_path)
    assert log.read_text(encoding="utf-8") == "mount -o remount /proc\n"
    assert (done.returncode != 0) == bool(status)
    assert said in done.stderr
    assert done.stderr.count("\n") == (1 if status else 0)  # one line
