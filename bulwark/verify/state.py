"""A read-only view of one host, read in two remote commands that run at once over the one reused
SSH connection: a quick read (clock, listeners) and a snapshot of every other source the controls
need, parsed into query methods. The parsers are pure and tested on recorded output."""

from __future__ import annotations

import re
import shlex
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from bulwark.hosts.commands import (
    AIDE_CHECK_TIMER,
    AIDE_DB,
    AIDE_INIT_UNIT,
    COMPILER_MODES,
    PROC_VIEWER_GROUPS,
    SUID_DENYLIST,
)

MARK = "@@bulwark-verify "
# Users whose effective sshd config is read: root, the deploy user, and one that does not exist
# (Match blocks can differ per user; an unknown user must get the strictest answer too).
UNKNOWN_USER = "bulwark-nobody"
SSHD_T_ADDR = "198.51.100.7"  # TEST-NET-2: a client address no Match Address block trusts


FAIL2BAN_QUERY = """
from fail2ban.client.csocket import CSocket
def ask(*command):
    try:
        sock = CSocket("/var/run/fail2ban/fail2ban.sock")
        try:
            code, answer = sock.send(list(command))
        finally:
            sock.close()
        return answer if code == 0 else None
    except Exception as exc:
        return None
status = ask("status")
if status is None:
    print("running: no")
    raise SystemExit
print("running: yes")
print("jails: " + dict(status).get("Jail list", ""))
print("journalmatch: " + repr(ask("get", "sshd", "journalmatch") or ""))
print("actions: " + ",".join(ask("get", "sshd", "actions") or []))
print("port: " + str(ask("get", "sshd", "action", "ufw", "port") or ""))
print("ignoreip: " + " ".join(map(str, ask("get", "sshd", "ignoreip") or [])))
"""


# Match blocks by address are invisible to `sshd -T` for an address they do not name: every
# address a Match line names (Address or LocalAddress; negations skipped, a range by its first
# address, wildcards filled in) becomes one more `sshd -T` for root, printed as its own part
# "sshd:root@addr=..." (see match_contexts_command).
MATCH_ADDRESSES_AWK = r"""
tolower($1) == "match" {
    for (i = 2; i < NF; i++) {
        crit = tolower($i)
        if (crit != "address" && crit != "localaddress") continue
        n = split($(i + 1), pattern, ",")
        for (j = 1; j <= n; j++) {
            p = pattern[j]
            if (p ~ /^!/) continue
            sub(/\/.*/, "", p); gsub(/[*?]/, "1", p)
            if (p !~ /^[0-9A-Fa-f:.]+$/) continue
            print (crit == "address" ? "addr=" : "laddr=") p
        }
    }
}
"""
MATCH_PREFIX = "root@"


def match_contexts_command() -> str:
    """Shell that prints one snapshot part per address a Match block names (see MARK)."""
    return (
        f"for c in $(cat /etc/ssh/sshd_config /etc/ssh/sshd_config.d/*.conf 2>/dev/null | "
        f"awk {shlex.quote(MATCH_ADDRESSES_AWK)} | sort -u); do "
        f'echo "{MARK}sshd:{MATCH_PREFIX}$c"; case $c in '
        f"addr=*) sshd -T -C user=root,host=bulwark-verify,$c 2>&1 ;; "
        f"*) sshd -T -C user=root,host=bulwark-verify,addr={SSHD_T_ADDR},$c 2>&1 ;; esac; done"
    )


UNITS = (
    "fail2ban ufw unattended-upgrades apt-daily.timer apt-daily-upgrade.timer "
    "apt-daily-upgrade.service systemd-timesyncd "
    "chrony ntp ntpsec openntpd auditd acct sysstat pgbouncer postgresql "
    f"{AIDE_CHECK_TIMER} {AIDE_INIT_UNIT} chkrootkit.timer"
)
# `systemctl show` prints one block per unit, in the order asked, blank-line separated.
UNITS_AWK = """
BEGIN { RS = ""; split(names, name, " ") }
{
    load = ""; file = ""; active = ""
    for (i = 1; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "LoadState") load = kv[2]
        else if (kv[1] == "UnitFileState") file = kv[2]
        else if (kv[1] == "ActiveState") active = kv[2]
    }
    if (load == "not-found") file = "absent"
    else if (file == "") file = "unknown"
    print name[NR], file, active
}
"""


def snapshot_parts(users: list[str]) -> dict[str, str]:
    """Every source the controls read: name -> shell command (run as root)."""
    parts = {
        f"sshd:{user}": f"sshd -T -C user={user},host=bulwark-verify,addr={SSHD_T_ADDR} 2>&1"
        for user in users
    }
    # Last of the sshd parts: it prints parts of its own, one per Match address.
    parts["sshd-match"] = match_contexts_command()
    stats = (
        "/etc/ssh /etc/ssh/sshd_config /etc/shadow /etc/passwd /etc/group /etc/login.defs "
        "/var/log /etc/crontab /etc/cron.hourly /etc/cron.daily /etc/cron.weekly "
        "/etc/cron.monthly /etc/cron.d /etc/hosts.equiv /etc/sudoers /var/log/journal"
    )
    parts |= {
        "os-release": "cat /etc/os-release",
        "kernel": "uname -r",
        # The server's own version: sshd has no version flag before 9.x, but its usage text
        # (printed for an unknown flag) starts with it.
        "openssh": "sshd -V 2>&1 | grep -m1 OpenSSH_",
        "sshd-procs": "ps -o args= -C sshd",
        "hostkeys": (
            "for f in $(sshd -T 2>/dev/null | awk '$1==\"hostkey\"{print $2}'); do "
            'ssh-keygen -l -f "$f.pub" 2>/dev/null || echo "missing $f"; done'
        ),
        "moduli": "awk '$1 !~ /^#/ {print $5}' /etc/ssh/moduli 2>/dev/null | sort -n | head -1",
        "sysctl": "sysctl -a 2>/dev/null",
        "mounts": "cat /proc/mounts",
        # What /proc is mounted with at the next boot, and the groups the services that must
        # see every process hold now.
        "fstab-proc": "awk '$1 !~ /^#/ && $2 == \"/proc\"' /etc/fstab 2>/dev/null",
        "proc-viewers": PROC_VIEWER_GROUPS,
        "ufw": "ufw status verbose 2>&1",
        # What ufw loads at boot: `ufw status` reads the live chains, which outlast a hand edit
        # to ENABLED=no until the next reboot.
        "ufw-conf": "grep -hE '^ENABLED=' /etc/ufw/ufw.conf 2>/dev/null; true",
        # One Python start asks the running server everything (fail2ban-client would cost one
        # start per question, about a second each on a small or emulated host).
        "fail2ban": f"python3 -c {shlex.quote(FAIL2BAN_QUERY)} 2>&1",
        # One systemctl for every unit (two per unit cost a second or more on a small host),
        # printed as "name unit-file-state active-state" in the order asked.
        "units": (
            f"systemctl show -p LoadState -p UnitFileState -p ActiveState {UNITS} 2>/dev/null | "
            f"awk -v names={shlex.quote(UNITS)} {shlex.quote(UNITS_AWK)}"
        ),
        "apt-config": "apt-config dump 2>/dev/null | grep -E '^(Unattended-Upgrade|APT::Periodic)'",
        "apt-policy": "apt-cache policy 2>/dev/null | grep -E '^ +release '",
        "sudoers": "cat /etc/sudoers /etc/sudoers.d/* 2>/dev/null | grep -vE '^\\s*(#[^i]|$)'",
        "visudo": "visudo -c >/dev/null 2>&1 && echo ok || echo failed",
        "shadow": 'awk -F: \'{print $1":"substr($2,1,1)":"length($2)}\' /etc/shadow',
        "passwd": "cat /etc/passwd",
        "group": "cat /etc/group",
        "login.defs": "grep -vE '^\\s*(#|$)' /etc/login.defs",
        "issue": "cat /etc/issue 2>/dev/null",
        "issue.net": "cat /etc/issue.net 2>/dev/null",
        "tmout": "grep -hE '^[^#]*TMOUT' /etc/profile /etc/profile.d/*.sh 2>/dev/null",
        "pam": (
            "grep -lE '^[^#]*pam_pwquality[.]so' /etc/pam.d/common-password 2>/dev/null; "
            "grep -lE '^[^#]*pam_tmpdir[.]so' /etc/pam.d/common-session 2>/dev/null; true"
        ),
        "auditctl-s": "auditctl -s 2>&1",
        "auditctl-l": "auditctl -l 2>&1",
        "defaults": (
            "grep -HE '^(ENABLED|CRON_CHECK)=' /etc/default/sysstat /etc/default/debsums "
            "2>/dev/null; true"
        ),
        "pacct": "ls /var/log/account/pacct 2>/dev/null; true",
        "aide": (
            f"ls {AIDE_DB} 2>/dev/null; grep -E '^Checksums[[:space:]]*=' /etc/aide/aide.conf "
            "2>/dev/null; true"
        ),
        "compilers": COMPILER_MODES,
        "stat": f"stat -c '%n %a %U %G %F' {stats} 2>/dev/null",
        "authkeys": (
            # Accounts with a login shell (listed in /etc/shells) and their key files.
            "awk -F: 'NR == FNR { shells[$0] = 1; next } ($7 in shells) { print $1 \":\" $6 }' "
            '/etc/shells /etc/passwd | while IFS=: read -r u h; do for f in "$h" "$h/.ssh" '
            '"$h/.ssh/authorized_keys" "$h/.ssh/authorized_keys2"; do [ -e "$f" ] && '
            'echo "$u $(stat -c \'%a %U\' "$f") $f"; done; done'
        ),
        # dev-sec os-06 is a denylist: stat those programs rather than walk the file system.
        "suid": (
            f"for f in {' '.join(sorted(SUID_DENYLIST))}; do "
            '{ [ -u "$f" ] || [ -g "$f" ]; } && echo "$f"; done; true'
        ),
        "rhosts": (
            "find / -maxdepth 3 \\( -iname .rhosts -o -iname .netrc -o -iname .shosts \\) "
            "2>/dev/null"
        ),
        # modprobe's effective configuration, once: which modules run a command instead.
        "modprobe": "modprobe -c 2>/dev/null | grep -E '^install '",
        "lsmod": "cut -d' ' -f1 /proc/modules",
        "pgbouncer-ini": "grep -vE '^\\s*(;|#|$)' /etc/pgbouncer/pgbouncer.ini 2>/dev/null",
        # Each user's name and the kind of its secret, told apart on the host: no part of a
        # secret ever leaves it.
        "pgbouncer-users": (
            "awk -F'\"' 'NF >= 4 { kind = \"plain\"; "
            'if (substr($4, 1, 14) == "SCRAM-SHA-256$") kind = "scram"; '
            'else if (substr($4, 1, 3) == "md5" && length($4) == 35) kind = "md5"; '
            "print $2, kind }' "
            "/etc/pgbouncer/userlist.txt 2>/dev/null"
        ),
        "cpu-vulns": "grep -H . /sys/devices/system/cpu/vulnerabilities/* 2>/dev/null",
        "entropy": "cat /proc/sys/kernel/random/entropy_avail",
        "cpu-flags": "grep -m1 '^flags' /proc/cpuinfo",
        "packages": "dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' 2>/dev/null",
        "path-root": "sh -lc 'echo $PATH' 2>/dev/null",
        "coredump": "cat /etc/systemd/coredump.conf /etc/systemd/coredump.conf.d/*.conf "
        "2>/dev/null | grep -vE '^\\s*(#|$)'; ulimit -Hc",
        "limits": "cat /etc/security/limits.conf /etc/security/limits.d/*.conf 2>/dev/null "
        "| grep -vE '^\\s*(#|$)'",
    }
    return parts


def early_parts() -> dict[str, str]:
    """What is read in a quick command of its own before the snapshot: the clock (judged against
    that command's short round trip) and the listening sockets (before the outside probe starts
    a listener of its own on an undeclared port)."""
    return {
        "time": "date +%s.%N; timedatectl show -p NTP -p NTPSynchronized 2>/dev/null",
        "listen": "ss -Htulpn 2>/dev/null",
    }


class SnapshotError(Exception):
    """The host's state could not be read whole (e.g. the connection dropped): every control
    that reads it is an error, not a failure with made-up evidence."""


def clock_offset(host_time: float, sent: float, received: float) -> float:
    """Seconds the host's clock lies outside the window in which the controller read it (0 when
    inside): the snapshot takes seconds on a small host, so no single instant is the reference."""
    if host_time < sent:
        return host_time - sent
    return max(0.0, host_time - received)


def snapshot_command(parts: dict[str, str]) -> str:
    # The parsers read English (ufw, for one, prints "Status: active" in 41 languages): the
    # login's own locale (pam_env's LANG) must not decide a control.
    reads = "; ".join(f"echo '{MARK}{name}'; {{ {cmd}; }}" for name, cmd in parts.items())
    return f"export LC_ALL=C LANGUAGE=; {reads}"


def split_snapshot(stdout: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(MARK):
            current = found.setdefault(line.removeprefix(MARK).strip(), [])
        elif current is not None:
            current.append(line)
    return found


def parse_sshd_t(lines: list[str]) -> dict[str, list[str]]:
    """`sshd -T` output: keyword (lower case) -> values, in order (repeatable keys keep all)."""
    config: dict[str, list[str]] = {}
    for line in lines:
        key, _, value = line.strip().partition(" ")
        if key and re.fullmatch(r"[a-z0-9]+", key):
            config.setdefault(key, []).append(value)
    return config


@dataclass(frozen=True)
class UfwRule:
    to: str  # "22/tcp", "5432/tcp"
    action: str  # "ALLOW IN", "LIMIT IN", "DENY IN"
    source: str  # "Anywhere", "10.0.0.0/8"
    v6: bool


@dataclass(frozen=True)
class UfwView:
    """`ufw status verbose` as verification reads it."""

    active: bool = False
    incoming: str | None = None
    outgoing: str | None = None
    logging: str | None = None
    rules: tuple[UfwRule, ...] = ()


class Unit(NamedTuple):
    """A systemd unit: its unit-file state (enabled, disabled, static, absent, ...) and its
    active state (active, inactive, failed, ... or "")."""

    file_state: str
    active: str


class Stat(NamedTuple):
    mode: str  # octal, "644"
    user: str
    group: str
    kind: str  # "regular file", "directory", ...


class MountPoint(NamedTuple):
    fstype: str
    options: list[str]


def parse_ufw(lines: list[str]) -> UfwView:
    """`ufw status verbose`: active, default policies, logging, and the rule table."""
    state: dict[str, object] = {}
    rules: list[UfwRule] = []
    table = False
    for raw in lines:
        line = raw.strip()
        if line.startswith("Status:"):
            state["active"] = line.split(":", 1)[1].strip() == "active"
        elif line.startswith("Default:"):
            match = re.search(r"(\w+) \(incoming\), (\w+) \(outgoing\)", line)
            if match:
                state["incoming"], state["outgoing"] = match.groups()
        elif line.startswith("Logging:"):
            state["logging"] = line.split(":", 1)[1].strip()
        elif line.startswith("--"):
            table = True
        elif table and line:
            line = re.sub(r"\s+# .*$", "", line)  # a rule's comment, e.g. fail2ban's on a ban
            match = re.match(
                r"^(?P<to>\S+(?: \(v6\))?)\s+"
                r"(?P<action>(?:ALLOW|DENY|LIMIT|REJECT)(?: IN| OUT| FWD)?)\s+(?P<src>.+?)$",
                line,
            )
            if match:
                to = match["to"]
                v6 = to.endswith("(v6)") or match["src"].endswith("(v6)")
                rules.append(
                    UfwRule(
                        to=to.removesuffix(" (v6)"),
                        action=match["action"],
                        source=match["src"].removesuffix(" (v6)"),
                        v6=v6,
                    )
                )
    return UfwView(
        active=state.get("active") is True,
        incoming=_text(state.get("incoming")),
        outgoing=_text(state.get("outgoing")),
        logging=_text(state.get("logging")),
        rules=tuple(rules),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


class HostState:
    """Everything the controls read from one host, fetched once (lazily) and parsed on demand."""

    def __init__(self, host: Any, deploy_user: str) -> None:
        self.host = host
        self.deploy_user = deploy_user
        self.users = ["root", deploy_user, UNKNOWN_USER]
        self.read_at = 0.0  # the controller's clock when the host's clock was read
        self.read_done = 0.0  # ... and when the answer came back
        self.early = threading.Event()  # set once the clock and the listeners are read
        self._reading: Future[dict[str, list[str]]] | None = None
        self._early: Future[dict[str, list[str]]] | None = None

    def start(self) -> None:
        """Begin reading the host in the background (the outside probes run meanwhile): the
        quick first read and the snapshot at once, each over its own channel of the one
        multiplexed connection, so the first read costs the critical path nothing."""
        if self._reading is None:
            pool = ThreadPoolExecutor(max_workers=2)
            self._early = pool.submit(self._read_early)
            self._reading = pool.submit(self._run, snapshot_parts(self.users))
            pool.shutdown(wait=False)  # the reads go on; the threads end with them

    def _read_early(self) -> dict[str, list[str]]:
        try:
            self.read_at = time.time()
            found = self._run(early_parts())
            self.read_done = time.time()
        finally:
            self.early.set()
        return found

    def _run(self, parts: dict[str, str]) -> dict[str, list[str]]:
        result = self.host.run("sh -c %s", snapshot_command(parts))
        found = split_snapshot(result.stdout)
        # Each part prints its marker before it runs: a missing one means the shell never got
        # there (the connection dropped, sudo failed), whatever the parts before it printed.
        missing = [name for name in parts if name not in found]
        if missing:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
            raise SnapshotError(
                f"the host's state could not be read: {len(missing)} of {len(parts)} parts "
                f"missing, from {missing[0]} on (exit {result.rc}: {detail[0] if detail else '-'})"
            )
        return found

    @cached_property
    def raw(self) -> dict[str, list[str]]:
        self.start()
        assert self._reading is not None
        assert self._early is not None
        return self._early.result() | self._reading.result()

    def lines(self, part: str) -> list[str]:
        return self.raw.get(part, [])

    def text(self, part: str) -> str:
        return "\n".join(self.lines(part))

    @property
    def sshd_contexts(self) -> list[str]:
        """The users whose sshd config is read, then root from each address a Match block
        names ("root@addr=10.0.0.0")."""
        found = sorted(
            p.removeprefix("sshd:") for p in self.raw if p.startswith(f"sshd:{MATCH_PREFIX}")
        )
        return [*self.users, *found]

    def sshd(self, user: str | None = None) -> dict[str, list[str]]:
        return parse_sshd_t(self.lines(f"sshd:{user or self.deploy_user}"))

    def sshd_value(self, key: str, user: str | None = None) -> str:
        values = self.sshd(user).get(key.lower(), [])
        return " ".join(values) if values else "(unset)"

    @cached_property
    def sysctl(self) -> dict[str, str]:
        found = {}
        for line in self.lines("sysctl"):
            key, sep, value = line.partition(" = ")
            if sep:
                found[key.strip()] = value.strip()
        return found

    @cached_property
    def mounts(self) -> dict[str, MountPoint]:
        found = {}
        for line in self.lines("mounts"):
            fields = line.split()
            if len(fields) >= 4:
                found[fields[1]] = MountPoint(fields[2], fields[3].split(","))
        return found

    @cached_property
    def ufw(self) -> UfwView:
        return parse_ufw(self.lines("ufw"))

    @cached_property
    def units(self) -> dict[str, Unit]:
        found = {}
        for line in self.lines("units"):
            name, *rest = line.split()
            found[name] = Unit(rest[0] if rest else "absent", rest[1] if len(rest) > 1 else "")
        return found

    def unit(self, name: str) -> Unit:
        """The unit's states; ("absent", "") when systemd does not know it."""
        return self.units.get(name, Unit("absent", ""))

    @cached_property
    def stats(self) -> dict[str, Stat]:
        found = {}
        for line in self.lines("stat"):
            path, mode, user, group, kind = line.split(" ", 4)
            found[path] = Stat(mode, user, group, kind)
        return found

    @cached_property
    def os_release(self) -> dict[str, str]:
        found = {}
        for line in self.lines("os-release"):
            key, sep, value = line.partition("=")
            if sep:
                found[key] = value.strip().strip('"')
        return found

    @cached_property
    def installed(self) -> set[str]:
        return {
            line.split()[-1].split(":")[0]
            for line in self.lines("packages")
            if line.startswith("ii")
        }

    @cached_property
    def login_defs(self) -> dict[str, str]:
        found = {}
        for line in self.lines("login.defs"):
            key, *value = line.split()
            found[key] = " ".join(value)
        return found

    def quote(self, text: str) -> str:
        return shlex.quote(text)


def parse_fail2ban(lines: list[str]) -> dict[str, str]:
    """The fail2ban query's `key: value` lines."""
    found = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if sep:
            found[key.strip()] = value.strip()
    return found
