"""Packages: apt that never prompts or trips on a busy lock, a full upgrade, what deploys need."""

from __future__ import annotations

from pyinfra.api import deploy

from bulwark.hosts.deploys.context import current
from bulwark.hosts.deploys.ssh import rsa_key_in_background
from bulwark.hosts.deploys.updates import distro
from bulwark.hosts.operations import (
    ConfigFile,
    config_files,
    first_run_upgrade,
    packages_present,
    security_sources,
)
from bulwark.hosts.templates import render
from bulwark.settings.hosts import HardenSettings

# Everything the deploys rely on; python3-systemd lets fail2ban read the journal (Debian 12 and
# later have no rsyslog, hence no auth.log).
PACKAGES = (
    "ufw",
    "fail2ban",
    "python3-systemd",
    "unattended-upgrades",
    "apt-listchanges",
    "needrestart",  # restarts the daemons a library update left on the old copy
    "sudo",
    "openssh-server",
)


@deploy("Packages")
def packages() -> None:
    config_files(
        name="apt waits for the dpkg lock and never prompts; needrestart restarts by itself",
        files=[
            ConfigFile("/etc/apt/apt.conf.d/80bulwark", render("apt/80bulwark.j2")),
            ConfigFile(
                "/etc/needrestart/conf.d/bulwark.conf", render("apt/needrestart-bulwark.conf.j2")
            ),
        ],
    )
    distro_id, codename = distro()
    security_sources(
        name=f"apt sources carry {codename}-security and {codename}-updates",
        distro_id=distro_id,
        codename=codename,
        manage=current().settings.updates.manage_sources,
    )
    wanted = [*PACKAGES, *optional()]
    answers = preseed_for(current().settings)
    first_run_upgrade(
        name="apt update, full upgrade and what hardening needs (first run)",
        packages=wanted,
        alongside=(rsa_key_in_background(),),
        preseed=answers,
    )
    packages_present(name="Install what hardening needs", packages=wanted, preseed=answers)


def preseed_for(conf: HardenSettings) -> tuple[str, ...]:
    """debconf answers given before the install. sysstat's own default is not to collect: its
    install would disable its three units (each `disable` reloads systemd) for bulwark to
    enable them again (an init script too: update-rc.d, more reloads), 10 s or more on a small
    host; answered first, it installs collecting."""
    if conf.audit.accounting:
        return ("sysstat sysstat/enable boolean true",)
    return ()


def optional(conf: HardenSettings | None = None) -> list[str]:
    """The packages of the settings that can be turned off (bulwark.accounts, bulwark.audit),
    for `conf` (default: the host being hardened)."""
    conf = conf or current().settings
    chosen = {
        "libpam-tmpdir": conf.accounts.pam_tmpdir,
        "libpam-pwquality": conf.accounts.password_quality,
        "auditd": conf.audit.auditd,
        "acct": conf.audit.accounting,
        "sysstat": conf.audit.accounting,
        "debsums": conf.audit.package_checks,
        "apt-show-versions": conf.audit.package_checks,
        # The program alone: aide-common's install runs ucf on each of its 200 rule files
        # (minutes on a small host); bulwark's own rules and timer replace it.
        "aide": conf.audit.file_integrity,
        "chkrootkit": conf.audit.rootkit_scan,
    }
    return [name for name, wanted in chosen.items() if wanted]
