"""Accounts and the audit trail (bulwark.accounts, bulwark.audit): login banners, password
policy, idle shells, PAM modules, auditd and its locked rules, process accounting, sysstat,
package checks, the AIDE baseline, the rootkit scan. Each control follows the host's declared
settings: an opted-out setting is not applicable, not a pass."""

from __future__ import annotations

from bulwark.hosts.commands import AIDE_CHECK_TIMER, AIDE_DB, AIDE_INIT_UNIT
from bulwark.settings.hosts import HardenSettings
from bulwark.verify.controls import control, not_applicable
from bulwark.verify.state import HostState


def assert_running(state: HostState, unit: str) -> None:
    """The unit starts at boot and runs now (a timer: is waiting for its next run)."""
    enabled, active = state.unit(unit)
    assert (enabled, active) == ("enabled", "active"), (
        f"{unit} is {enabled}, {active or 'not active'}"
    )


# The audit rule keys bulwark's rule file declares (templates/audit/bulwark.rules.j2).
AUDIT_KEYS = ("time-change", "identity", "system-locale", "scope", "logins", "session", "sshd",
              "perm_mod", "access", "mounts", "delete", "modules", "cron")  # fmt: skip


@control(
    "os-login-banners",
    "The declared legal notice is shown before login (sshd) and on the console",
    rationale="A notice of monitoring and of unauthorised use being prohibited is what makes "
    "acting on an intrusion defensible in many jurisdictions; the default /etc/issue names "
    "the OS release instead.",
    cis="1.7.2",
)
def test_login_banners(state: HostState, expected: HardenSettings) -> None:
    banner = expected.ssh.banner
    if not banner:
        not_applicable("no banner is declared (bulwark.ssh.banner: null)")
        return
    wanted = banner.strip()
    for part in ("issue", "issue.net"):
        shown = "\n".join(state.lines(part)).strip()
        assert shown == wanted, f"/etc/{part} is {shown[:80]!r}, not the declared notice"


@control(
    "os-password-policy",
    "login.defs: password ages and hashing rounds as declared",
    rationale="A password that never expires stays valid after a leak; cheap hashing makes a "
    "stolen shadow file quick to crack.",
    cis="5.4.1.1",
    devsec="os-05",
)
def test_password_policy(state: HostState, expected: HardenSettings) -> None:
    policy = expected.accounts
    wanted = {
        "PASS_MAX_DAYS": policy.password_max_days,
        "PASS_MIN_DAYS": policy.password_min_days,
        "PASS_WARN_AGE": policy.password_warn_days,
        "SHA_CRYPT_MIN_ROUNDS": policy.hash_rounds,
        "SHA_CRYPT_MAX_ROUNDS": policy.hash_rounds,
    }
    found = state.login_defs
    wrong = [f"{k} {found.get(k, 'unset')} (want {v})" for k, v in wanted.items()
             if found.get(k) != str(v)]  # fmt: skip
    assert not wrong, "; ".join(wrong)


@control(
    "os-shell-timeout",
    "An idle interactive shell exits after the declared time (readonly TMOUT)",
    rationale="A forgotten root shell on an unattended terminal is an open door.",
    cis="5.4.3.2",
)
def test_shell_timeout(state: HostState, expected: HardenSettings) -> None:
    limit = expected.accounts.shell_timeout
    if not limit:
        not_applicable("no idle timeout is declared (bulwark.accounts.shell_timeout: 0)")
    lines = state.lines("tmout")
    values = [int(v) for line in lines for v in [line.split("TMOUT=", 1)[-1].split()[0]]
              if "TMOUT=" in line and v.isdigit()]  # fmt: skip
    assert values, "no TMOUT is set in /etc/profile or /etc/profile.d"
    assert max(values) <= limit, f"TMOUT {max(values)} s (want at most {limit} s)"
    assert any(line.split()[:2] == ["readonly", "TMOUT"] or "readonly TMOUT" in line
               for line in lines), "TMOUT is not readonly: a user can unset it"  # fmt: skip


@control(
    "os-pam-modules",
    "PAM: weak new passwords refused (pwquality), private temporary directories (tmpdir)",
    rationale="pam_pwquality stops a guessable password being set; pam_tmpdir gives each "
    "login its own TMPDIR, so users cannot race or read each other's temporary files.",
    cis="5.3.3.2",
)
def test_pam_modules(state: HostState, expected: HardenSettings) -> None:
    wanted = {
        "/etc/pam.d/common-password": expected.accounts.password_quality,
        "/etc/pam.d/common-session": expected.accounts.pam_tmpdir,
    }
    if not any(wanted.values()):
        not_applicable("both PAM modules are opted out (bulwark.accounts)")
    found = set(state.lines("pam"))
    missing = [path for path, on in wanted.items() if on and path not in found]
    assert not missing, f"the declared PAM module is not in {', '.join(missing)}"


@control(
    "audit-auditd",
    "auditd runs with bulwark's rules loaded, locked until reboot when declared",
    rationale="An audit trail of identity, privilege, sshd, time and module changes is how an "
    "intrusion is reconstructed; locked rules cannot be quietly turned off by root.",
    cis="4.1.1.2",
    devsec="package-08",
)
def test_auditd(state: HostState, expected: HardenSettings) -> None:
    if not expected.audit.auditd:
        not_applicable("auditd is opted out (bulwark.audit.auditd: false)")
    assert_running(state, "auditd")
    status = dict(line.split(" ", 1) for line in state.lines("auditctl-s") if " " in line)
    want = "2" if expected.audit.immutable else "1"
    assert status.get("enabled") == want, (
        f"auditctl -s: enabled {status.get('enabled')} (want {want}"
        f"{': rules locked until reboot' if want == '2' else ''})"
    )
    rules = "\n".join(state.lines("auditctl-l"))
    missing = [key for key in AUDIT_KEYS if f"-k {key}" not in rules and f"key={key}" not in rules]
    assert not missing, f"audit rules missing for keys: {', '.join(missing)}"


@control(
    "audit-accounting",
    "Process accounting and sysstat collect (what ran, and the load, over time)",
    rationale="After an incident, lastcomm and sar show which commands ran and when the host "
    "was busy; without them that history is gone.",
)
def test_accounting(state: HostState, expected: HardenSettings) -> None:
    if not expected.audit.accounting:
        not_applicable("accounting is opted out (bulwark.audit.accounting: false)")
    for unit in ("acct", "sysstat"):
        assert_running(state, unit)
    assert "/var/log/account/pacct" in state.lines("pacct"), "no /var/log/account/pacct"
    assert '/etc/default/sysstat:ENABLED="true"' in state.lines("defaults"), (
        'sysstat does not collect: /etc/default/sysstat lacks ENABLED="true"'
    )


@control(
    "package-integrity-tools",
    "debsums checks installed files weekly; apt-show-versions is there",
    rationale="A changed file of a package (a trojaned binary) shows up in debsums; "
    "apt-show-versions lists packages behind their archive.",
)
def test_package_checks(state: HostState, expected: HardenSettings) -> None:
    if not expected.audit.package_checks:
        not_applicable("package checks are opted out (bulwark.audit.package_checks: false)")
    missing = {"debsums", "apt-show-versions"} - state.installed
    assert not missing, f"not installed: {', '.join(sorted(missing))}"
    assert "/etc/default/debsums:CRON_CHECK=weekly" in state.lines("defaults"), (
        "debsums's cron check is not weekly (/etc/default/debsums CRON_CHECK)"
    )


@control(
    "audit-file-integrity",
    "AIDE has a sha512 baseline of the system's files and checks it daily",
    rationale="A replaced binary or a planted file shows up in the next day's AIDE report, "
    "even where the intruder covered the logs.",
    cis="6.1.1, 6.1.2",
)
def test_file_integrity(state: HostState, expected: HardenSettings) -> None:
    if not expected.audit.file_integrity:
        not_applicable("AIDE is opted out (bulwark.audit.file_integrity: false)")
    assert "aide" in state.installed, "aide is not installed"
    assert_running(state, AIDE_CHECK_TIMER)
    lines = state.lines("aide")
    checksums = [line for line in lines if line.startswith("Checksums")]
    assert checksums and "sha512" in checksums[-1], (
        f"/etc/aide/aide.conf: {checksums[-1] if checksums else 'no Checksums line'} (want sha512)"
    )
    # Right after a first harden the baseline is still being built: that counts.
    _, building = state.unit(AIDE_INIT_UNIT)
    assert AIDE_DB in lines or building == "active", (
        f"no baseline: {AIDE_DB} is absent and {AIDE_INIT_UNIT}.service is not building one"
    )


@control(
    "audit-rootkit-scan",
    "chkrootkit scans for known rootkits daily",
    rationale="Known rootkits leave known traces; a daily scan finds them before a person would.",
)
def test_rootkit_scan(state: HostState, expected: HardenSettings) -> None:
    if not expected.audit.rootkit_scan:
        not_applicable("chkrootkit is opted out (bulwark.audit.rootkit_scan: false)")
    assert "chkrootkit" in state.installed, "chkrootkit is not installed"
    assert_running(state, "chkrootkit.timer")


@control(
    "os-compilers-restricted",
    "Compilers and the assembler run for root only (when declared)",
    rationale="An intruder without root cannot build a local exploit on the host itself.",
)
def test_compilers_restricted(state: HostState, expected: HardenSettings) -> None:
    if not expected.accounts.restrict_compilers:
        not_applicable("compilers are left open (bulwark.accounts.restrict_compilers: false)")
    found = [line.partition(" ") for line in state.lines("compilers")]
    if not found:
        not_applicable("no compiler is installed")
    open_to_all = [path for mode, _, path in found if int(mode, 8) & 0o007]
    assert not open_to_all, f"others may run: {', '.join(open_to_all)}"
