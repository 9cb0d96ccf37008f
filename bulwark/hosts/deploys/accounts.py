"""Accounts and the audit trail: password policy in login.defs, idle shells closed, auditd with
its rules (locked until reboot), process accounting, sysstat collecting, weekly debsums, an AIDE
baseline checked daily, a daily chkrootkit scan. The packages come with the rest in the Packages
area (`packages.optional`)."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.facts.files import FindInFile
from pyinfra.facts.server import Arch
from pyinfra.operations import files

from bulwark.hosts.commands import AIDE_CHECK_TIMER, AIDE_DB, AIDE_INIT_UNIT
from bulwark.hosts.deploys.context import current
from bulwark.hosts.facts import AideBaseline, CompilerModes, LoginDefs
from bulwark.hosts.inventory import InventoryHost
from bulwark.hosts.operations import ConfigFile, config_files, fact, line_set, units_running
from bulwark.hosts.templates import render

TMOUT = "/etc/profile.d/bulwark-tmout.sh"
AUDIT_RULES = "/etc/audit/rules.d/bulwark.rules"
AUDIT_LOCK = "/etc/audit/rules.d/99-bulwark-immutable.rules"
DEBSUMS_DEFAULTS = "/etc/default/debsums"
SYSSTAT_DEFAULTS = "/etc/default/sysstat"
SYSSTAT_ENABLED = '^ENABLED="true"'

# Loading rules into a locked kernel fails; that is fine once they are the ones the file says
# (they were loaded before the lock), and the file's new rules then apply at the next boot.
AUDIT_LOAD = "augenrules --load || auditctl -s | grep -q '^enabled 2'"

# systemd must read changed unit files again, but only while the timer is enabled: until then
# the audit trail's units_running enables it, and every `systemctl enable` reloads systemd
# itself (two reloads on a first run would be 2 s more on a small host).
AIDE_UNITS_CHANGED = f"! systemctl is-enabled --quiet {AIDE_CHECK_TIMER} || systemctl daemon-reload"

# The audited system calls per architecture: aarch64 has only the *at forms of the old calls.
SYSCALLS = {
    "b64-x86_64": {
        "perm": "chmod,fchmod,fchmodat,chown,fchown,fchownat,lchown",
        "access": "creat,open,openat,truncate,ftruncate",
        "delete": "unlink,unlinkat,rename,renameat",
    },
    "b64-aarch64": {
        "perm": "fchmod,fchmodat,fchown,fchownat",
        "access": "openat,truncate,ftruncate",
        "delete": "unlinkat,renameat2",
    },
}


def audit_rules(machine: str) -> str:
    """bulwark's rule file for a host of this `uname -m` (32-bit calls too on x86_64)."""
    if machine in {"x86_64", "amd64"}:
        calls = SYSCALLS["b64-x86_64"]
        return render("audit/bulwark.rules.j2", arches=["b64", "b32"],
                      syscalls={"b64": calls, "b32": calls})  # fmt: skip
    return render("audit/bulwark.rules.j2", arches=["b64"],
                  syscalls={"b64": SYSCALLS["b64-aarch64"]})  # fmt: skip


@operation()
def login_defs(values: dict[str, str]):  # type: ignore[no-untyped-def]
    """Set keys of /etc/login.defs: a key's line is replaced where it is set, added otherwise.

    + values: key -> value
    """
    current_values = fact(LoginDefs)
    edits = []
    for key, value in values.items():
        if current_values.get(key) == value:
            continue
        line = shlex.quote(f"{key}\t\t{value}")
        if key in current_values:
            edits.append(f"sed -i -E 's/^{key}[[:space:]].*$/'{line}'/' /etc/login.defs")
        else:
            edits.append(f"echo {line} >> /etc/login.defs")
    if not edits:
        host.noop(f"login.defs sets {', '.join(values)}")
        return
    yield " && ".join(edits)  # one round trip for all


@operation()
def sysstat_collects():  # type: ignore[no-untyped-def]
    """sysstat collects every 10 minutes: ENABLED="true" in its file (which its debconf
    script reads first) and in debconf (which a package upgrade writes back)."""
    if fact(FindInFile, path=SYSSTAT_DEFAULTS, pattern=SYSSTAT_ENABLED):
        host.noop("sysstat collects")
        return
    yield (
        "sed -i -E 's/^ENABLED=.*/ENABLED=\"true\"/' /etc/default/sysstat && "
        "echo 'sysstat sysstat/enable boolean true' | debconf-set-selections"
    )


@operation()
def compilers_for_root():  # type: ignore[no-untyped-def]
    """Compilers on the host run for root only: mode 0750 through dpkg-statoverride, so that a
    package upgrade keeps it."""
    modes = fact(CompilerModes)
    open_to_all = sorted(path for path, mode in modes.items() if int(mode, 8) & 0o007)
    for path in open_to_all:
        quoted = shlex.quote(path)
        yield (
            f"dpkg-statoverride --remove {quoted} 2>/dev/null; "
            f"dpkg-statoverride --update --add root root 0750 {quoted}"
        )
    if not open_to_all:
        host.noop(f"{len(modes)} compilers run for root only" if modes else "no compilers")


# The first baseline reads every file it covers: minutes on a small VPS, far more than a harden
# should wait. It runs in the background at idle CPU and IO priority, and becomes the database
# once whole.
AIDE_INIT = (
    "install -d -m 700 /var/lib/aide && "
    f"{{ systemctl reset-failed {AIDE_INIT_UNIT} 2>/dev/null; "
    f"systemd-run --unit={AIDE_INIT_UNIT} --description='bulwark: AIDE first baseline' "
    "--nice=19 -p IOSchedulingClass=idle /bin/sh -c "
    + shlex.quote(f"aide --config=/etc/aide/aide.conf --init && mv {AIDE_DB}.new {AIDE_DB}")
    + "; }"
)


@operation()
def aide_baseline():  # type: ignore[no-untyped-def]
    """AIDE has a database to check against: the first one is built in the background."""
    state = fact(AideBaseline)
    if state == "built":
        host.noop("AIDE's baseline is built")
    elif state == "building":
        host.noop(f"AIDE's baseline is being built ({AIDE_INIT_UNIT}.service)")
    else:
        yield AIDE_INIT


@deploy("File integrity baseline")
def integrity_baseline() -> None:
    """AIDE's first baseline, as the last step of a harden: it holds the host as the run left
    it (the areas before it enable units, write files)."""
    aide_baseline(name="AIDE baseline of the hardened host (built in the background)")


@deploy("Accounts and audit trail")
def accounts(inventory_host: InventoryHost | None = None) -> None:
    conf = (inventory_host or current()).settings
    policy = conf.accounts
    login_defs(
        name="login.defs: password ages, hashing rounds, umask",
        values={
            "PASS_MAX_DAYS": str(policy.password_max_days),
            "PASS_MIN_DAYS": str(policy.password_min_days),
            "PASS_WARN_AGE": str(policy.password_warn_days),
            "SHA_CRYPT_MIN_ROUNDS": str(policy.hash_rounds),
            "SHA_CRYPT_MAX_ROUNDS": str(policy.hash_rounds),
            "UMASK": conf.kernel.umask,
        },
    )
    timeout = policy.shell_timeout
    tmout = (
        f"# Managed by bulwark: an idle interactive shell exits after {timeout} s.\n"
        f"TMOUT={timeout}\nreadonly TMOUT\nexport TMOUT\n"
    )
    if timeout:
        config_files(name=f"Idle shells exit after {timeout} s", files=[ConfigFile(TMOUT, tmout)])
    else:
        files.file(name="Idle shells stay open", path=TMOUT, present=False)
    if policy.restrict_compilers:
        compilers_for_root(name="Compilers run for root only")
    if conf.audit.package_checks:
        line_set(
            name="debsums checks installed files against their packages weekly",
            path=DEBSUMS_DEFAULTS,
            pattern="^CRON_CHECK=",
            line="CRON_CHECK=weekly",
        )
    if conf.audit.auditd:
        rules = [ConfigFile(AUDIT_RULES, audit_rules(fact(Arch)), mode="640",
                            then=AUDIT_LOAD)]  # fmt: skip
        if conf.audit.immutable:
            rules.append(ConfigFile(AUDIT_LOCK, render("audit/99-bulwark-immutable.rules.j2"),
                                    mode="640", then=AUDIT_LOAD))  # fmt: skip
        config_files(
            name="auditd rules" + (", locked until reboot" if conf.audit.immutable else ""),
            files=rules,
        )
        if not conf.audit.immutable:
            files.file(name="audit rules not locked", path=AUDIT_LOCK, present=False)
    if conf.audit.file_integrity:
        config_files(
            name="AIDE: bulwark's rules (sha512) and a daily check",
            files=[
                ConfigFile("/etc/aide/aide.conf", render("audit/aide.conf.j2"), mode="600"),
                *(
                    ConfigFile(
                        f"/etc/systemd/system/{unit}",
                        render(f"audit/{unit}.j2"),
                        then=AIDE_UNITS_CHANGED,
                    )
                    for unit in ("bulwark-aide-check.service", AIDE_CHECK_TIMER)
                ),
            ],
        )
    units = (
        (["auditd.service"] if conf.audit.auditd else [])
        + (["acct.service", "sysstat.service"] if conf.audit.accounting else [])
        + ([AIDE_CHECK_TIMER] if conf.audit.file_integrity else [])
        + (["chkrootkit.timer"] if conf.audit.rootkit_scan else [])
    )
    if conf.audit.accounting:
        sysstat_collects(name="sysstat collects activity every 10 minutes")
    if units:
        units_running(name=f"Audit trail: {', '.join(units)}", units=units)
