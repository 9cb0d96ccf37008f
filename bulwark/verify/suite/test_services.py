"""The services that guard the host: UFW, fail2ban, unattended-upgrades, time sync. Each is read
through its own tools (`ufw status`, `fail2ban-client`, `apt-config`, `apt-cache policy`)."""

from __future__ import annotations

import ipaddress
import re

from bulwark.settings.hosts import HardenSettings
from bulwark.verify.controls import control
from bulwark.verify.state import HostState, UfwRule, clock_offset, parse_fail2ban


def declared_rules(expected: HardenSettings) -> set[tuple[str, str, str]]:
    """(to, action, source) as `ufw status` prints the declared rules."""
    ssh_action = "LIMIT IN" if expected.firewall.ssh_rate_limit else "ALLOW IN"
    rules = {
        (f"{expected.ssh.port}/tcp", ssh_action, _source(s)) for s in expected.firewall.ssh_sources
    }
    for rule in expected.firewall.allow:
        rules |= {(f"{rule.port}/{rule.proto}", "ALLOW IN", _source(s)) for s in rule.sources}
    if expected.pgbouncer is not None:
        pooler = expected.pgbouncer
        rules |= {(f"{pooler.port}/tcp", "ALLOW IN", _source(s)) for s in pooler.client_ranges}
    return rules


def _source(source: str) -> str:
    return "Anywhere" if source == "any" else source


def _as_rule(rule: UfwRule) -> tuple[str, str, str]:
    return (rule.to, rule.action, rule.source)


@control(
    "ufw-active",
    "UFW is active: deny incoming, allow outgoing, logging on",
    rationale="Anything not declared must not be reachable, even if a service starts listening.",
    cis="4.2.3, 4.2.7",
)
def test_ufw_active(state: HostState) -> None:
    ufw = state.ufw
    assert ufw.active, f"ufw status: {state.text('ufw').splitlines()[:1] or ['no output']}"
    assert ufw.incoming == "deny", f"default incoming policy {ufw.incoming}"
    assert ufw.outgoing == "allow", f"default outgoing policy {ufw.outgoing}"
    assert ufw.logging and not ufw.logging.startswith("off"), f"logging {ufw.logging}"
    enabled, _ = state.unit("ufw")
    assert enabled == "enabled", f"ufw.service is {enabled}: the firewall is gone after a reboot"
    conf = dict(line.partition("=")[::2] for line in state.lines("ufw-conf"))
    at_boot = conf.get("ENABLED", "").strip("\"'")
    assert at_boot == "yes", (
        f"/etc/ufw/ufw.conf has ENABLED={at_boot or '(unset)'}: ufw loads no rules at the next "
        "boot (`ufw enable` sets it)"
    )


@control(
    "ufw-declared-ports",
    "UFW allows exactly the declared ports from the declared sources (IPv4 and IPv6)",
    rationale="A port opened by hand and forgotten is how hosts get breached.",
    cis="4.2.6",
)
def test_ufw_declared_ports(state: HostState, expected: HardenSettings) -> None:
    # What lets traffic in; DENY/REJECT rules (fail2ban's bans among them) open nothing.
    rules = [r for r in state.ufw.rules if r.action in ("ALLOW IN", "LIMIT IN")]
    v4 = {_as_rule(r) for r in rules if not r.v6}
    wanted = declared_rules(expected)
    extra, missing = v4 - wanted, wanted - v4
    assert not extra and not missing, (
        f"ufw allows {sorted(extra) or 'nothing extra'}; missing {sorted(missing) or 'nothing'}"
    )
    if expected.firewall.ipv6:
        v6 = {_as_rule(r) for r in rules if r.v6}
        wanted6 = {w for w in wanted if w[2] == "Anywhere"}
        assert v6 == wanted6, f"IPv6 rules {sorted(v6)}; want {sorted(wanted6)}"


def _fail2ban(state: HostState) -> dict[str, str]:
    return parse_fail2ban(state.lines("fail2ban"))


@control(
    "fail2ban-active",
    "fail2ban runs, starts at boot, and has the sshd jail loaded",
    rationale="A fail2ban that died on a missing log file protects nothing, silently.",
)
def test_fail2ban_active(state: HostState) -> None:
    enabled, active = state.unit("fail2ban")
    assert active == "active", f"fail2ban.service is {active or enabled}"
    assert enabled == "enabled", f"fail2ban.service is {enabled} at boot"
    f2b = _fail2ban(state)
    assert f2b.get("running") == "yes", (
        f"fail2ban's server does not answer: {state.text('fail2ban')}"
    )
    jails = [j.strip() for j in f2b.get("jails", "").split(",")]
    assert "sshd" in jails, f"loaded jails: {f2b.get('jails') or 'none'}"


@control(
    "fail2ban-sshd-jail",
    "The sshd jail reads the journal, watches the real SSH port and bans through UFW",
    rationale="Debian 12 has no auth.log; a jail on the wrong port or backend never bans.",
)
def test_fail2ban_sshd_jail(state: HostState, expected: HardenSettings) -> None:
    f2b = _fail2ban(state)
    assert f2b.get("running") == "yes", "fail2ban's server does not answer"
    # Only the systemd backend has a journal match: without it, a journald-only host's sshd
    # messages never reach the jail.
    journal = f2b.get("journalmatch", "")
    assert "_SYSTEMD_UNIT" in journal or "_COMM" in journal, (
        f"the sshd jail does not read the journal (journal match: {journal or 'none'})"
    )
    actions = f2b.get("actions", "").split(",")
    assert "ufw" in actions, f"sshd jail actions {actions}: bans would not reach the firewall"
    for entry in f2b.get("ignoreip", "").split():
        try:
            ignored = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue  # a host name: fail2ban resolves it
        assert ignored.prefixlen > 0, (
            f"the sshd jail ignores {entry}: every address of its family is exempt, so it never "
            "bans (fix ignoreip in jail.local)"
        )
    ports = f2b.get("port", "")
    names = {str(expected.ssh.port)} | ({"ssh"} if expected.ssh.port == 22 else set())
    assert set(ports.split(",")) & names, (
        f"the sshd jail bans port {ports or '?'}; sshd listens on {expected.ssh.port}"
    )


@control(
    "fail2ban-recidive",
    "Repeat offenders are banned for longer (recidive jail) when declared",
    rationale="A scanner that waits out a short ban comes back; recidive keeps it out.",
)
def test_fail2ban_recidive(state: HostState, expected: HardenSettings) -> None:
    jails = [j.strip() for j in _fail2ban(state).get("jails", "").split(",")]
    loaded = "recidive" in jails
    assert loaded == expected.fail2ban.recidive, (
        f"recidive jail {'loaded' if loaded else 'absent'}; declared {expected.fail2ban.recidive}"
    )


def apt_config(state: HostState) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in state.lines("apt-config"):
        match = re.match(r'^(\S+?)(?:::)? "(.*)";$', line.strip())
        if match:
            found.setdefault(match[1].rstrip(":"), []).append(match[2])
    return found


def origin_matches(pattern: str, release: dict[str, str], distro: dict[str, str]) -> bool:
    """unattended-upgrades' Origins-Pattern match: every key=value must equal the release's."""
    for part in pattern.split(","):
        key, _, value = part.partition("=")
        value = value.replace("${distro_id}", distro["id"]).replace(
            "${distro_codename}", distro["codename"]
        )
        names = {"origin": "o", "codename": "n", "label": "l", "archive": "a", "suite": "a"}
        if release.get(names.get(key, key)) != value:
            return False
    return True


def allowed_origin_matches(entry: str, release: dict[str, str], distro: dict[str, str]) -> bool:
    """Allowed-Origins "origin:archive" form (Ubuntu's). unattended-upgrades compares the archive
    (suite) only: on Debian the security suite is "stable-security", so a codename-based line
    ("Debian:bookworm-security") matches nothing - the pitfall this control exists for."""
    origin, _, archive = (
        entry.replace("${distro_id}", distro["id"])
        .replace("${distro_codename}", distro["codename"])
        .partition(":")
    )
    return release.get("o") == origin and release.get("a") == archive


@control(
    "updates-unattended",
    "unattended-upgrades is installed and runs daily",
    rationale="Security updates nobody installs protect nobody.",
    cis="1.2.2.1",
)
def test_updates_unattended(state: HostState) -> None:
    assert "unattended-upgrades" in state.installed, "unattended-upgrades is not installed"
    conf = apt_config(state)
    # apt.systemd.daily stops at once when APT::Periodic::Enable is 0 (unset means 1).
    enable = (conf.get("APT::Periodic::Enable") or ["1"])[-1]
    assert enable != "0", "APT::Periodic::Enable is 0: apt's daily jobs do nothing at all"
    for key in ("APT::Periodic::Update-Package-Lists", "APT::Periodic::Unattended-Upgrade"):
        value = (conf.get(key) or ["0"])[-1]
        assert value not in ("0", ""), f"{key} is {value}: apt never runs it"
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        enabled, active = state.unit(timer)
        assert (enabled, active) == ("enabled", "active"), f"{timer} is {enabled}/{active}"
    service, _ = state.unit("apt-daily-upgrade.service")
    assert service != "masked", (
        "apt-daily-upgrade.service is masked: its timer fires and nothing is upgraded"
    )


@control(
    "updates-restart-services",
    "needrestart restarts the services an update left on old libraries",
    rationale="A patched library protects nothing while the daemons that loaded it keep the "
    "old copy in memory.",
    cis="1.2.2.1",
)
def test_updates_restart_services(state: HostState) -> None:
    assert "needrestart" in state.installed, "needrestart is not installed"


@control(
    "updates-security-origin",
    "unattended-upgrades would install from the distro's security archive",
    rationale="Ubuntu-style origins on Debian match nothing: hosts silently go unpatched.",
    cis="1.2.2.1",
)
def test_updates_security_origin(state: HostState) -> None:
    release = state.os_release
    distro = {
        "id": release.get("ID", "").capitalize(),
        "codename": release.get("VERSION_CODENAME", ""),
    }
    security = []
    for line in state.lines("apt-policy"):
        fields = dict(
            part.split("=", 1) for part in line.split(None, 1)[-1].split(",") if "=" in part
        )
        if fields.get("n", "").endswith("-security") or fields.get("a", "").endswith("-security"):
            security.append(fields)
    assert security, "apt has no security archive among its sources"
    conf = apt_config(state)
    patterns = conf.get("Unattended-Upgrade::Origins-Pattern", [])
    allowed = conf.get("Unattended-Upgrade::Allowed-Origins", [])
    matched = [
        rel
        for rel in security
        if any(origin_matches(p, rel, distro) for p in patterns)
        or any(allowed_origin_matches(a, rel, distro) for a in allowed)
    ]
    assert matched, (
        f"no configured origin ({patterns + allowed or 'none'}) matches the security archive "
        f"{security[0]}"
    )


@control(
    "time-sync",
    "Exactly one time sync daemon runs, is synchronised, and the clock agrees with the "
    "controller's",
    rationale="Logs, TLS and TOTP all depend on the time; two daemons fight each other.",
    cis="2.3.1.1",
)
def test_time_sync(state: HostState) -> None:
    daemons = [
        name
        for name in ("systemd-timesyncd", "chrony", "ntp", "ntpsec", "openntpd")
        if state.unit(name)[1] == "active"
    ]
    if {"ntp", "ntpsec"} <= set(daemons):
        daemons.remove("ntp")  # Debian's ntpsec.service is also ntp.service (Alias=): one daemon
    assert len(daemons) == 1, f"time sync daemons running: {daemons or 'none'}"
    lines = state.lines("time")
    assert lines and re.fullmatch(r"\d+(\.\d+)?", lines[0].strip()), (
        f"the host's clock could not be read: {lines[:1] or 'no output'}"
    )
    offset = clock_offset(float(lines[0]), state.read_at, state.read_done)
    assert abs(offset) < 15, (
        f"the host's clock is {offset:+.0f} s off the controller's (read within "
        f"{state.read_done - state.read_at:.1f} s)"
    )
    ntp = dict(line.partition("=")[::2] for line in lines[1:] if "=" in line)
    assert ntp.get("NTP") == "yes", (
        f"network time synchronisation is off (timedatectl NTP={ntp.get('NTP', '?')})"
    )
    assert ntp.get("NTPSynchronized") == "yes", (
        f"the clock is not synchronised ({daemons[0]} reached no time server; timedatectl "
        f"NTPSynchronized={ntp.get('NTPSynchronized', '?')})"
    )
