"""Automatic security updates: unattended-upgrades with the origins that match the distro,
daily timers, reboot policy; the run proves that a dry run picks the security origin."""

from __future__ import annotations

import io

from pyinfra import host
from pyinfra.api import OperationError, deploy
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import files, server, systemd

from bulwark.hosts.deploys.context import current
from bulwark.hosts.templates import render


def distro() -> tuple[str, str]:
    """(id, codename) such as ("debian", "bookworm") or ("ubuntu", "noble")."""
    info = host.get_fact(LinuxDistribution)
    meta = info.get("release_meta") or {}
    distro_id = str(meta.get("ID", "")).lower()
    codename = str(meta.get("VERSION_CODENAME", ""))
    if distro_id not in ("debian", "ubuntu") or not codename:
        raise OperationError(
            f"{host.name}: bulwark hardens Debian and Ubuntu; this host is {distro_id or '?'}"
        )
    return distro_id, codename


def security_origin(distro_id: str, codename: str) -> str:
    """How `unattended-upgrade --dry-run -d` prints the security origin it will use."""
    if distro_id == "debian":
        return f"origin=Debian,codename={codename}-security,label=Debian-Security"
    return f"o=Ubuntu,a={codename}-security"


@deploy("Security updates")
def updates() -> None:
    conf = current().settings
    distro_id, codename = distro()
    config = files.put(
        name=f"unattended-upgrades: {distro_id} security origins",
        src=io.StringIO(
            render(
                "apt/50unattended-upgrades.j2",
                distro_id=distro_id,
                codename=codename,
                updates=conf.updates,
            )
        ),
        dest="/etc/apt/apt.conf.d/50unattended-upgrades",
        mode="644",
    )
    periodic = files.put(
        name="apt periodic: update lists and upgrade daily",
        src=io.StringIO(render("apt/20auto-upgrades.j2")),
        dest="/etc/apt/apt.conf.d/20auto-upgrades",
        mode="644",
    )
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        systemd.service(name=f"{timer} enabled", service=timer, running=True, enabled=True)
    origin = security_origin(distro_id, codename)
    server.shell(
        name="A dry run of unattended-upgrade picks the security origin",
        commands=[
            "unattended-upgrade --dry-run -d 2>&1 | grep -F 'Allowed origins are:' "
            f"| grep -qF '{origin}' || {{ echo 'unattended-upgrade would not use {origin}' >&2; "
            "exit 1; }"
        ],
        _if=[lambda: config.did_change() or periodic.did_change()],
    )
