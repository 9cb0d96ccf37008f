"""Accounts, files and the OS (dev-sec linux-baseline os-* and package-*), sudo, authorized_keys,
and what listens on the network."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from bulwark.hosts.commands import SUID_DENYLIST
from bulwark.settings.hosts import HardenSettings
from bulwark.verify.controls import control, not_applicable
from bulwark.verify.state import HostState

# path -> (mode, owner, group); None in a slot means "any".
FILE_MODES: list[tuple[str, str, str, str | None, str, str]] = [
    ("os-shadow", "/etc/shadow", "640", "root", "shadow", "os-02"),
    ("os-passwd", "/etc/passwd", "644", "root", "root", "os-03"),
    ("os-group", "/etc/group", "644", "root", "root", ""),
    ("os-login-defs-file", "/etc/login.defs", "644", "root", "root", "os-05"),
    ("os-sudoers-file", "/etc/sudoers", "440", "root", "root", ""),
]


def _mode_ok(actual: str, wanted: str) -> bool:
    """Actual grants no more than wanted (e.g. 600 satisfies 644)."""
    return all(int(a) & ~int(w) == 0 for a, w in zip(actual.zfill(4), wanted.zfill(4), strict=True))


@pytest.mark.parametrize(
    ("path", "mode", "user", "group"),
    [
        pytest.param(
            path,
            mode,
            user,
            group,
            id=cid,
            marks=control(
                cid,
                f"{path} is {user}:{group} and at most {mode}",
                rationale="Account and policy files readable or writable by others leak or "
                "grant accounts.",
                cis="7.1",
                devsec=devsec or (),
            ),
        )
        for cid, path, mode, user, group, devsec in FILE_MODES
    ],
)
def test_file_modes(state: HostState, path: str, mode: str, user: str, group: str | None) -> None:
    found = state.stats.get(path)
    assert found, f"{path} is missing"
    actual_mode, actual_user, actual_group, _ = found
    assert _mode_ok(actual_mode, mode), f"{path} mode {actual_mode} (want <= {mode})"
    assert (actual_user, actual_group) == (user, group), (
        f"{path} owned by {actual_user}:{actual_group} (want {user}:{group})"
    )


@control(
    "os-no-password-hashes-in-passwd",
    "No password hash sits in world-readable /etc/passwd",
    rationale="Hashes in /etc/passwd can be cracked offline by any user.",
    devsec="os-03b",
)
def test_no_hashes_in_passwd(state: HostState) -> None:
    leaked = [
        line.split(":")[0]
        for line in state.lines("passwd")
        if line.split(":")[1:2] not in (["x"], ["*"])
    ]
    assert not leaked, f"password field is not x for {', '.join(leaked)}"


@control(
    "os-no-empty-passwords",
    "No account has an empty password",
    rationale="An empty password logs in with nothing (su, console, any PAM service).",
    cis="7.2.2",
)
def test_no_empty_passwords(state: HostState) -> None:
    empty = [line.split(":")[0] for line in state.lines("shadow") if line.endswith(":0")]
    assert not empty, f"empty password: {', '.join(empty)}"


@control(
    "os-password-aging",
    "Password aging limits apply where passwords are usable",
    rationale="A password that never expires stays valid after a leak.",
    cis="5.4.1.1",
    devsec="os-05",
)
def test_password_aging(state: HostState) -> None:
    usable = [
        line.split(":")[0]
        for line in state.lines("shadow")
        if line.split(":")[1] not in ("*", "!") and not line.endswith(":0")
    ]
    if not usable:
        not_applicable("no account has a usable password (SSH is key-only)")
    days = state.login_defs.get("PASS_MAX_DAYS", "99999")
    assert int(days) <= 365, f"PASS_MAX_DAYS {days}; accounts with passwords: {usable}"


@control(
    "os-login-defs",
    "login.defs: the declared umask, system PATHs, login retries and timeout",
    rationale="A permissive umask makes every new file readable by everyone.",
    devsec="os-05",
    cis="5.4.3.3",
)
def test_login_defs(state: HostState, expected: HardenSettings) -> None:
    defs = state.login_defs
    assert defs.get("UMASK") == expected.kernel.umask, (
        f"UMASK {defs.get('UMASK')} (want {expected.kernel.umask})"
    )
    assert int(defs.get("LOGIN_RETRIES", "5")) <= 5, f"LOGIN_RETRIES {defs['LOGIN_RETRIES']}"
    assert int(defs.get("LOGIN_TIMEOUT", "60")) <= 60, f"LOGIN_TIMEOUT {defs['LOGIN_TIMEOUT']}"
    for key in ("ENV_SUPATH", "ENV_PATH"):
        path = defs.get(key, "").removeprefix("PATH=")
        parts = path.split(":")
        assert "" not in parts and "." not in parts, f"{key} contains '.' or an empty entry"


@control(
    "os-path-no-dot",
    "root's PATH has no '.' or empty entry",
    rationale="A dot in PATH runs whatever sits in the current directory as root.",
    devsec="os-04",
)
def test_path_no_dot(state: HostState) -> None:
    path = state.text("path-root").strip()
    assert path, "root's login PATH is empty"
    parts = path.split(":")
    assert "" not in parts and "." not in parts, f"root PATH {path}"


@control(
    "os-trusted-hosts",
    "No hosts.equiv, .rhosts, .shosts or .netrc files",
    rationale="They grant logins or hold cleartext credentials.",
    devsec=("os-01", "os-09"),
)
def test_trusted_hosts(state: HostState) -> None:
    assert "/etc/hosts.equiv" not in state.stats, "/etc/hosts.equiv exists"
    found = [line for line in state.lines("rhosts") if line.strip()]
    assert not found, f"found {', '.join(found)}"


@control(
    "os-suid-denylist",
    "No setuid/setgid bit on programs that do not need it",
    rationale="Every setuid program is a path to root if it has a bug.",
    devsec="os-06",
)
def test_suid_denylist(state: HostState) -> None:
    found = sorted(set(state.lines("suid")) & SUID_DENYLIST)
    assert not found, f"setuid/setgid: {', '.join(found)}"


@control(
    "os-unique-ids",
    "User and group ids are unique",
    rationale="Two accounts with one uid are one account with two names.",
    cis="7.2.5, 7.2.6",
    devsec="os-07",
)
def test_unique_ids(state: HostState) -> None:
    uids = Counter(line.split(":")[2] for line in state.lines("passwd") if line.count(":") >= 6)
    gids = Counter(line.split(":")[2] for line in state.lines("group") if line.count(":") >= 3)
    dup = [f"uid {u}" for u, n in uids.items() if n > 1] + [
        f"gid {g}" for g, n in gids.items() if n > 1
    ]
    assert not dup, f"duplicated: {', '.join(dup)}"


@control(
    "os-entropy",
    "The kernel's random number generator is ready",
    rationale="Keys generated from a starved RNG are guessable.",
    devsec="os-08",
)
def test_entropy(state: HostState) -> None:
    release = state.text("kernel").strip()
    major, minor = (int(x) for x in re.findall(r"\d+", release)[:2])
    if (major, minor) >= (5, 18):
        not_applicable(
            f"kernel {release}: since 5.18 the CSPRNG never depletes and entropy_avail is a "
            "constant 256, so dev-sec's >= 1000 cannot be met or mean anything"
        )
    available = int(state.text("entropy").strip() or 0)
    assert available >= 1000, f"entropy_avail {available} (want >= 1000)"


@control(
    "os-log-dir",
    "/var/log is root's and not writable by others",
    rationale="Logs others can rewrite prove nothing.",
    devsec="os-11",
)
def test_log_dir(state: HostState) -> None:
    found = state.stats.get("/var/log")
    assert found, "/var/log is missing"
    mode, user, group, _ = found
    assert user == "root" and group in ("root", "syslog", "adm"), f"/var/log {user}:{group}"
    assert int(mode[-1]) & 2 == 0, f"/var/log mode {mode} is world-writable"


@control(
    "os-cpu-vulnerabilities",
    "The kernel reports no CPU vulnerability as unmitigated",
    rationale="An unmitigated Spectre/MDS-class flaw leaks memory across processes and VMs.",
    devsec="os-12",
)
def test_cpu_vulnerabilities(state: HostState) -> None:
    lines = state.lines("cpu-vulns")
    if not lines:
        not_applicable("the kernel has no /sys/devices/system/cpu/vulnerabilities")
    vulnerable = [line.rsplit("/", 1)[-1] for line in lines if re.search(r":\s*Vulnerable", line)]
    assert not vulnerable, f"unmitigated: {', '.join(vulnerable)}"


@control(
    "os-cron-permissions",
    "cron's files and directories are root's only",
    rationale="Whoever can write a cron file runs code as root.",
    cis="2.4.1.2-2.4.1.7",
    devsec="os-13",
)
def test_cron_permissions(state: HostState) -> None:
    paths = ["/etc/crontab"] + [
        f"/etc/cron.{d}" for d in ("hourly", "daily", "weekly", "monthly", "d")
    ]
    present = {p: state.stats[p] for p in paths if p in state.stats}
    if not present:
        not_applicable("cron is not installed")
    problems = [
        f"{path} {mode} {user}:{group}"
        for path, (mode, user, group, _) in present.items()
        if user != "root" or int(mode[-2:], 8) & 0o77
    ]
    assert not problems, "; ".join(problems)


@control(
    "os-sudo",
    "sudo runs commands in a pty and logs them to a file; sudoers parse",
    rationale="A pty stops a sudo'd program from injecting into the caller's terminal; the log "
    "is the audit trail.",
    cis="5.2.2, 5.2.3",
)
def test_sudo(state: HostState) -> None:
    sudoers = state.text("sudoers")
    assert re.search(r"^\s*Defaults\s+.*\buse_pty\b", sudoers, re.M), "no Defaults use_pty"
    assert re.search(r"^\s*Defaults\s+.*\blogfile\s*=", sudoers, re.M), "no Defaults logfile"
    assert state.text("visudo").strip() == "ok", "visudo -c rejects the sudoers files"


@control(
    "os-authorized-keys",
    "Home directories, ~/.ssh and authorized_keys belong to their user and no one else writes them",
    rationale="Whoever can write a user's authorized_keys can log in as that user.",
    cis="7.2.9",
)
def test_authorized_keys(state: HostState) -> None:
    problems = []
    for line in state.lines("authkeys"):
        user, mode, owner, path = line.split(" ", 3)
        perms = int(mode, 8)
        if owner != user:
            problems.append(f"{path} owned by {owner}, not {user}")
        if path.endswith("/.ssh") and perms & 0o077:
            problems.append(f"{path} mode {mode} (want 700)")
        elif "authorized_keys" in path and perms & 0o077:
            problems.append(f"{path} mode {mode} (want 600)")
        elif perms & 0o022:
            problems.append(f"{path} mode {mode} is writable by others")
    assert not problems, "; ".join(problems)


# What may listen beyond loopback without being declared: DHCP clients (v4, v6).
EXPECTED_UDP = {68, 546}


@control(
    "net-listeners",
    "Nothing listens beyond loopback except sshd and the declared ports",
    rationale="An unexpected listener is either a mistake or an intruder.",
    cis="2.1.22",
)
def test_listeners(state: HostState, expected: HardenSettings) -> None:
    declared = {(expected.ssh.port, "tcp")} | {(r.port, r.proto) for r in expected.firewall.allow}
    if expected.pgbouncer is not None:
        declared.add((expected.pgbouncer.port, "tcp"))
    listening = state.lines("listen")
    # sshd listens (this very connection came through it): a listing without its port is a
    # failed read (no `ss`, say), which must not pass as "nothing unexpected".
    ssh_port = f":{expected.ssh.port}"
    assert any(
        line.startswith("tcp") and len(line.split()) > 4 and line.split()[4].endswith(ssh_port)
        for line in listening
    ), f"the listening sockets could not be read (`ss -Htulpn` shows no sshd on {ssh_port})"
    unexpected = []
    for line in listening:
        fields = line.split()
        if len(fields) < 5:
            continue
        proto, local = fields[0], fields[4]
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%")[0]
        if address.startswith("127.") or address == "::1" or not port.isdigit():
            continue
        if (int(port), proto) in declared or (proto == "udp" and int(port) in EXPECTED_UDP):
            continue
        process = re.search(r'users:\(\("([^"]+)"', line)
        unexpected.append(f"{proto} {local} ({process[1] if process else '?'})")
    assert not unexpected, f"listening: {', '.join(unexpected)}"


# (id, packages, dev-sec id, CIS Debian Linux 12 v1.1.0 item)
PACKAGES_ABSENT = [
    ("package-inetd", ("inetd", "openbsd-inetd", "inetutils-inetd", "xinetd"), "package-01",
     "2.1.19"),
    ("package-telnetd", ("telnetd", "inetutils-telnetd", "telnetd-ssl"), "package-02", ""),
    ("package-rsh-server", ("rsh-server", "rsh-redone-server"), "package-03", ""),
    ("package-nis-server", ("nis", "ypserv"), "package-05", "2.1.10"),
    ("package-tftp-server", ("tftpd", "tftpd-hpa", "atftpd", "tftp-server"), "package-06",
     "2.1.16"),
    ("package-prelink", ("prelink",), "package-09", "1.5.4"),
]  # fmt: skip


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(
            names,
            id=cid,
            marks=control(
                cid,
                f"{names[0]} is not installed",
                rationale="Cleartext or legacy network services, or tools that rewrite "
                "binaries, have no place on a hardened server.",
                cis=cis,
                devsec=devsec,
            ),
        )
        for cid, names, devsec, cis in PACKAGES_ABSENT
    ],
)
def test_package_absent(state: HostState, names: tuple[str, ...]) -> None:
    installed = sorted(set(names) & state.installed)
    assert not installed, f"installed: {', '.join(installed)}"


@control(
    "package-syslog",
    "System logs are kept (journald persistent, or a syslog daemon)",
    rationale="dev-sec asks for rsyslog; Debian 12+ logs to the journal, which must persist.",
    devsec="package-07",
)
def test_syslog(state: HostState) -> None:
    if {"rsyslog", "syslog-ng", "syslog-ng-core"} & state.installed:
        return
    journal = state.stats.get("/var/log/journal")
    assert journal, "no syslog daemon, and /var/log/journal is missing: logs die at reboot"
