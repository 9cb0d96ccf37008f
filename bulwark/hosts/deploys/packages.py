"""Packages: apt that never prompts or trips on a busy lock, a full upgrade, what deploys need."""

from __future__ import annotations

import io

from pyinfra.api import deploy
from pyinfra.operations import apt, files

from bulwark.hosts.templates import render

# Everything the deploys rely on; python3-systemd lets fail2ban read the journal (Debian 12 and
# later have no rsyslog, hence no auth.log).
PACKAGES = (
    "ufw",
    "fail2ban",
    "python3-systemd",
    "unattended-upgrades",
    "apt-listchanges",
    "sudo",
    "openssh-server",
)


@deploy("Packages")
def packages() -> None:
    files.put(
        name="apt: wait for the dpkg lock, never prompt",
        src=io.StringIO(render("apt/80bulwark.j2")),
        dest="/etc/apt/apt.conf.d/80bulwark",
        mode="644",
    )
    files.put(
        name="needrestart: restart services automatically, never prompt",
        src=io.StringIO(render("apt/needrestart-bulwark.conf.j2")),
        dest="/etc/needrestart/conf.d/bulwark.conf",
        mode="644",
        create_remote_dir=True,
    )
    apt.update(name="apt update (at most hourly)", cache_time=3600)
    apt.dist_upgrade(name="Full upgrade")
    apt.packages(name="Install what hardening needs", packages=list(PACKAGES), no_recommends=True)
