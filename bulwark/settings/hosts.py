"""Settings of the hosts bulwark bootstraps and hardens, each with its default and reason."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from bulwark.settings.load import Int, one_line
from bulwark.settings.net import check_address_text, ufw_source
from bulwark.settings.pooler import PgbouncerSettings

# What useradd accepts on Debian and Ubuntu without --badname, minus names we must not touch.
USER_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
RESERVED_USERS = frozenset({"root", "daemon", "bin", "sys", "sync", "nobody", "sshd", "_apt"})


def check_user_name(name: str) -> str:
    if not USER_NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid user name {name!r}: use 1-32 of a-z, 0-9, '_' or '-', starting with a letter"
        )
    if name in RESERVED_USERS:
        raise ValueError(f"user name {name!r} is a system account: choose a dedicated deploy user")
    return name


UserName = Annotated[str, AfterValidator(check_user_name)]

GROUP_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# fail2ban's time abbreviations: 600, 10m, 1h30m, 1d, 1w, 1mo, 1y. Written so that each digit
# has one reading (a nested `(\d+unit?)+` backtracks exponentially on a long bad value).
DURATION_RE = re.compile(r"^\d{1,9}(?:(?:mo|[smhdwy])\d{1,9})*(?:mo|[smhdwy])?$")
# A kernel module's name as modprobe.d reads it (one word: it becomes `install NAME /bin/false`).
MODULE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


def check_group_name(name: str) -> str:
    if not GROUP_NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid group name {name!r}: use 1-32 of a-z, 0-9, '_' or '-', starting with a letter"
        )
    return name


def check_duration(value: str) -> str:
    if len(value) > 32 or not DURATION_RE.fullmatch(value):
        raise ValueError(
            f"invalid duration {value!r}: use seconds (600) or fail2ban's units (10m, 1h, 1d, 1w)"
        )
    return value


def check_module(name: str) -> str:
    if not MODULE_RE.fullmatch(name):
        raise ValueError(
            f"invalid kernel module name {name!r}: use its name as lsmod shows it (1-64 of a-z, "
            "0-9, '_' or '-')"
        )
    return name


def check_address(value: str) -> str:
    try:
        ipaddress.ip_network(check_address_text(value), strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or CIDR range (e.g. 192.0.2.10 or 10.0.0.0/8)"
        ) from None
    return value


def check_max_startups(value: str) -> str:
    """sshd's MaxStartups: 'full' or 'start:rate:full' with start <= full and rate 1-100."""
    parts = value.split(":")
    fix = "use a number (e.g. 10) or start:rate:full (e.g. 10:30:60)"
    if len(parts) not in (1, 3) or not all(re.fullmatch(r"[0-9]{1,4}", p) for p in parts):
        raise ValueError(f"invalid MaxStartups {value!r}: {fix}")
    if len(parts) == 3:
        start, rate, full = map(int, parts)
        if start > full or not 1 <= rate <= 100:
            raise ValueError(
                f"invalid MaxStartups {value!r}: start must not exceed full and rate must be "
                f"1-100 ({fix})"
            )
    return value


def check_clock_time(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"invalid time {value!r}: use HH:MM on a 24-hour clock, e.g. 04:00")
    return value


def check_mail(value: str) -> str:
    if not MAIL_RE.fullmatch(value):
        raise ValueError(f"invalid mail address {value!r}: use one address, e.g. ops@example.com")
    return value


GroupName = Annotated[str, AfterValidator(check_group_name)]
Duration = Annotated[str, AfterValidator(check_duration)]
Address = Annotated[str, AfterValidator(check_address)]
Module = Annotated[str, AfterValidator(check_module)]


class DeployUser(BaseModel):
    """The account automation and operators use once root login is gone."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: UserName = Field(
        default="deploy",
        description="Deploy user created by bootstrap; the only way in after hardening.",
    )
    key_file: Path = Field(
        default=Path("~/.ssh/bulwark_ed25519"),
        description=(
            "Operator's private ed25519 key; its public half is installed for the deploy user. "
            "Created (0600) when missing."
        ),
    )
    shell: str = Field(default="/bin/bash", description="Login shell of the deploy user.")

    @property
    def key_path(self) -> Path:
        return self.key_file.expanduser()


def deploy_user(name: str = "deploy", key_file: Path | None = None) -> DeployUser:
    """Build a DeployUser from CLI values, turning validation errors into one-line ConfigErrors."""
    fields: dict[str, object] = {"name": name}
    if key_file is not None:
        fields["key_file"] = key_file
    try:
        return DeployUser.model_validate(fields)
    except ValidationError as exc:
        raise one_line(exc, "deploy_user") from None


# ----------------------------------------------------------------------------- hardening
# Each field: the default is the secure choice; the description says why and what it touches.
# The settings table in docs/hosts.md is generated from these declarations (`bulwark settings`).


LEGAL_BANNER = (
    "Authorized access only. This system is private: activity on it is monitored and "
    "recorded, and unauthorized use is prohibited and may be prosecuted under law."
)


def check_banner(text: str) -> str:
    """Printable text on at most 20 lines; no backslash, which getty reads in /etc/issue as an
    escape (\\s, \\r: the OS and kernel an attacker wants to learn)."""
    if not text.strip():
        raise ValueError("is empty: write the notice, or null for no banner")
    if "\\" in text:
        raise ValueError("holds a backslash, an escape in /etc/issue: leave it out")
    if any(not ch.isprintable() for ch in text.replace("\n", "")):
        raise ValueError("holds a control character: use plain text lines")
    if len(text.splitlines()) > 20:
        raise ValueError("is longer than 20 lines: keep the notice short")
    return text


class SshSettings(BaseModel):
    """sshd, through the drop-in /etc/ssh/sshd_config.d/00-bulwark.conf (read first, so it wins)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    port: Int = Field(
        default=22, ge=1, le=65535, description="SSH port; a change opens the firewall first."
    )
    allow_users: tuple[UserName, ...] = Field(
        default=(),
        description="AllowUsers; empty means the deploy user only. Must include the user "
        "bulwark connects as, or the run is refused before anything changes.",
    )
    allow_groups: tuple[GroupName, ...] = Field(
        default=(),
        description="AllowGroups, in addition to AllowUsers (both must match); the user bulwark "
        "connects as must be in one of them, or the run is refused before anything changes.",
    )
    max_auth_tries: Int = Field(
        default=3, ge=1, le=10, description="MaxAuthTries: guesses per connection (CIS: <= 4)."
    )
    login_grace_time: Int = Field(
        default=30, ge=10, le=120, description="LoginGraceTime seconds: unauthenticated hold."
    )
    client_alive_interval: Int = Field(
        default=300, ge=0, le=86400, description="ClientAliveInterval seconds: probe idle sessions."
    )
    client_alive_count_max: Int = Field(
        default=2, ge=0, le=100, description="ClientAliveCountMax: unanswered probes before a drop."
    )
    max_sessions: Int = Field(default=10, ge=1, le=1000, description="MaxSessions per connection.")
    max_startups: Annotated[str, AfterValidator(check_max_startups)] = Field(
        default="10:30:60", description="MaxStartups: throttle unauthenticated connections."
    )
    banner: Annotated[str, AfterValidator(check_banner)] | None = Field(
        default=LEGAL_BANNER,
        description="The legal notice shown before login: sshd's Banner (/etc/issue.net) and "
        "the console's /etc/issue. A notice is what makes monitoring and prosecution of "
        "unauthorised use defensible in many jurisdictions. null for none.",
    )
    revert_after: Int = Field(
        default=180,
        ge=60,
        le=3600,
        description="Seconds after an sshd change before the host restores the previous config "
        "unless a fresh login as the deploy user cancels it.",
    )


class FirewallRule(BaseModel):
    """One allowed inbound port."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    port: Int = Field(ge=1, le=65535)
    proto: str = Field(default="tcp", pattern="^(tcp|udp)$")
    sources: tuple[str, ...] = Field(default=("any",), description="CIDRs allowed, or 'any'.")

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(ufw_source(v) for v in value)


class FirewallSettings(BaseModel):
    """UFW: default deny in, allow out; SSH allowed and rate-limited before it is enabled."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    allow: tuple[FirewallRule, ...] = Field(
        default=(), description="Inbound ports to open besides SSH, with their source ranges."
    )
    ssh_sources: tuple[str, ...] = Field(
        default=("any",), description="Where SSH may come from (CIDRs, or 'any')."
    )

    @field_validator("ssh_sources")
    @classmethod
    def _ssh_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(ufw_source(v) for v in value)

    ssh_rate_limit: bool = Field(
        default=True, description="ufw limit on SSH: 6 connections in 30 s per source."
    )
    ipv6: bool = Field(default=True, description="Apply the same rules to IPv6.")
    logging: str = Field(
        default="low", pattern="^(off|low|medium|high|full)$", description="ufw logging level."
    )


class Fail2banSettings(BaseModel):
    """fail2ban: sshd jail on the journal (works without rsyslog), banning through ufw."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    bantime: Duration = Field(default="1h", description="How long a ban lasts.")
    findtime: Duration = Field(default="10m", description="Window in which failures are counted.")
    maxretry: Int = Field(
        default=5, ge=1, le=1000, description="Failures within findtime before a ban."
    )
    ignoreip: tuple[Address, ...] = Field(
        default=(), description="Operator ranges never banned (localhost is always ignored)."
    )
    recidive: bool = Field(
        default=True, description="Ban repeat offenders for a week (recidive jail)."
    )


class UpdatesSettings(BaseModel):
    """unattended-upgrades: security updates applied daily, with the origins of the distro."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    automatic_reboot: bool = Field(
        default=True, description="Reboot when an update needs it (kernel, libc)."
    )
    reboot_time: Annotated[str, AfterValidator(check_clock_time)] = Field(
        default="04:00", description="When such a reboot may happen (HH:MM, 24-hour clock)."
    )
    mail: Annotated[str, AfterValidator(check_mail)] | None = Field(
        default=None,
        description="Mail reports to this address if set (the host needs a working sendmail).",
    )
    manage_sources: bool = Field(
        default=True,
        description="Add the release's security archive (and -updates) to apt's sources when "
        "they lack it (deb822, /etc/apt/sources.list.d/bulwark-security.sources). Named "
        "opt-out for hosts whose sources are managed elsewhere: harden then refuses a host "
        "without the security archive instead.",
    )


class KernelSettings(BaseModel):
    """sysctl, modules, mounts, core dumps, time sync, sudo logging, umask."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    routes_or_containers: bool = Field(
        default=False,
        description="Named opt-out for hosts that route or run containers: keeps IP forwarding "
        "on and leaves the bridge/overlay modules alone.",
    )
    ipv6_autoconf: bool = Field(
        default=False,
        description="Keep IPv6 router advertisements and SLAAC: set true where the provider "
        "configures IPv6 that way, or the host loses IPv6 at the next boot.",
    )
    disabled_filesystems: tuple[Module, ...] = Field(
        default=("cramfs", "freevxfs", "jffs2", "hfs", "hfsplus", "squashfs", "udf"),
        description="File systems nobody mounts on a server (CIS 1.1.1).",
    )
    disabled_protocols: tuple[Module, ...] = Field(
        default=("dccp", "sctp", "rds", "tipc"), description="Rare network protocols (CIS 3.2)."
    )
    disabled_devices: tuple[Module, ...] = Field(
        default=("usb-storage", "firewire-core"),
        description="USB mass storage and FireWire drivers: no disk is plugged into a server, "
        "and FireWire gives a device DMA to memory (CIS 1.1.23). () where a USB disk is used.",
    )
    harden_tmp: bool = Field(
        default=True,
        description="Mount /tmp and /dev/shm with nodev,nosuid,noexec.",
    )
    hide_processes: bool = Field(
        default=True,
        description="/proc mounted hidepid=invisible: each user sees only their own processes "
        "(another's command line can hold a secret); root and the group `proc` see all, and "
        "systemd-logind and polkit get that group. Add a monitoring agent's user to `proc`, or "
        "false where users must see each other's processes (false leaves /proc as it is).",
    )
    umask: str = Field(default="027", pattern="^0[0-7]{2}$", description="login.defs UMASK.")


class AccountsSettings(BaseModel):
    """Password policy in /etc/login.defs, for the accounts that have one (SSH is key-only)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    password_max_days: Int = Field(
        default=365,
        ge=1,
        le=99999,
        description="PASS_MAX_DAYS: a new password expires (CIS 5.4.1.1).",
    )
    password_min_days: Int = Field(
        default=1, ge=0, le=365, description="PASS_MIN_DAYS: no cycling back to the old one."
    )
    password_warn_days: Int = Field(
        default=14, ge=0, le=365, description="PASS_WARN_AGE: warning before expiry."
    )
    hash_rounds: Int = Field(
        default=65536,
        ge=5000,
        le=10_000_000,
        description="SHA_CRYPT_MIN_ROUNDS and _MAX_ROUNDS: passwords set with chpasswd or "
        "newusers cost a guesser this many rounds each.",
    )
    password_quality: bool = Field(
        default=True,
        description="libpam-pwquality: passwd refuses a weak new password (Debian's defaults: "
        "length, classes, not a dictionary word).",
    )
    shell_timeout: Int = Field(
        default=900,
        ge=0,
        le=86400,
        description="Seconds an interactive shell may sit idle before it exits (readonly TMOUT "
        "in /etc/profile.d): a forgotten root shell does not stay open. 0 for none.",
    )
    restrict_compilers: bool = Field(
        default=True,
        description="Compilers and the assembler (as, cc, gcc, g++, clang) run for root only "
        "(0750, kept across upgrades with dpkg-statoverride): an intruder without root cannot "
        "build an exploit on the host. false where users compile (CI runners, builds).",
    )
    pam_tmpdir: bool = Field(
        default=True,
        description="libpam-tmpdir: each login gets a private TMPDIR (/tmp/user/<uid>), so "
        "users cannot race or read each other's temporary files. false where programs share "
        "files through $TMPDIR.",
    )


class AuditSettings(BaseModel):
    """The audit trail: auditd rules, process accounting, activity statistics, package checks,
    a file integrity baseline and a rootkit scan."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    auditd: bool = Field(
        default=True,
        description="auditd with bulwark's rules (CIS 4.1.3: identity, sudoers, sshd, time, "
        "modules, mounts, refused access...; `ausearch -k identity`). false where another agent "
        "owns the kernel's audit stream.",
    )
    immutable: bool = Field(
        default=True,
        description="Lock the audit rules (-e 2) until the next boot, so an intruder with root "
        "cannot quietly turn auditing off; a rule change then takes effect at the next boot.",
    )
    accounting: bool = Field(
        default=True,
        description="Process accounting (acct: `lastcomm`, `sa`) and activity statistics "
        "(sysstat: `sar`), to reconstruct what ran and when. false on hosts too small to "
        "keep them.",
    )
    package_checks: bool = Field(
        default=True,
        description="debsums (files of installed packages checked against their checksums) "
        "and apt-show-versions (packages behind their archive).",
    )
    file_integrity: bool = Field(
        default=True,
        description="AIDE: a sha512 baseline of programs, libraries, kernels and configuration "
        "(/boot /etc /usr /opt /root), built once in the background at idle priority, then "
        "checked daily (bulwark-aide-check.timer; report: journalctl -u bulwark-aide-check). "
        "false on hosts whose files change by design.",
    )
    rootkit_scan: bool = Field(
        default=True,
        description="chkrootkit scans daily for known rootkits and their traces "
        "(chkrootkit.timer; report in /var/log/chkrootkit/). false where another malware "
        "scanner runs.",
    )


class HardenSettings(BaseModel):
    """Everything `bulwark harden` reads from host data (the `bulwark` key of group_data)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    deploy_user: UserName = Field(
        default="deploy", description="The user bulwark connects as (created by bootstrap)."
    )
    ssh: SshSettings = SshSettings()
    firewall: FirewallSettings = FirewallSettings()
    fail2ban: Fail2banSettings = Fail2banSettings()
    updates: UpdatesSettings = UpdatesSettings()
    kernel: KernelSettings = KernelSettings()
    accounts: AccountsSettings = AccountsSettings()
    audit: AuditSettings = AuditSettings()
    pgbouncer: PgbouncerSettings | None = Field(
        default=None,
        description="PgBouncer on this host (transaction pooling; see the pgbouncer table).",
    )

    @property
    def allowed_users(self) -> tuple[str, ...]:
        return self.ssh.allow_users or (self.deploy_user,)


def harden_settings(data: object, where: str = "bulwark") -> HardenSettings:
    """Validate host data into HardenSettings; the error names the field and the fix."""
    try:
        return HardenSettings.model_validate(data or {})
    except ValidationError as exc:
        raise one_line(exc, where) from None
