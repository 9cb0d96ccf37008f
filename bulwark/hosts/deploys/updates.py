"""Automatic security updates: unattended-upgrades with the origins that match the distro,
daily timers, reboot policy; the run proves that a dry run picks the security origin."""

from __future__ import annotations

import re

from pyinfra import host, logger
from pyinfra.api import OperationError, deploy
from pyinfra.facts.server import LinuxDistribution

from bulwark.hosts.deploys.context import current
from bulwark.hosts.inventory import InventoryHost
from bulwark.hosts.operations import ConfigFile, config_files, fact, program_exists, units_running
from bulwark.hosts.templates import render

CODENAME_RE = re.compile(r"[a-z][a-z0-9-]{1,30}")


def distro() -> tuple[str, str]:
    """(id, codename) such as ("debian", "bookworm") or ("ubuntu", "noble")."""
    info = fact(LinuxDistribution)
    meta = info.get("release_meta") or {}
    distro_id = str(meta.get("ID", "")).lower()
    codename = str(meta.get("VERSION_CODENAME", ""))
    if distro_id not in ("debian", "ubuntu") or not codename:
        raise OperationError(
            f"{host.name}: bulwark hardens Debian and Ubuntu; this host is {distro_id or '?'}"
        )
    if not CODENAME_RE.fullmatch(codename):  # it goes into apt's sources and config files
        raise OperationError(f"{host.name}: os-release VERSION_CODENAME {codename!r} is not a "
                             "release name: fix /etc/os-release")  # fmt: skip
    return distro_id, codename


def security_origin(distro_id: str, codename: str) -> str:
    """How `unattended-upgrade --dry-run -d` prints the security origin it will use."""
    if distro_id == "debian":
        return f"origin=Debian,codename={codename}-security,label=Debian-Security"
    return f"o=Ubuntu,a={codename}-security"


# The dry run prints the origins it allows once it has read apt's config, before it builds its
# package cache (most of a dry run's minute under emulation): the check stops it there, once a
# line follows the origins line (so that line is whole; PYTHONUNBUFFERED, or its stdout to a
# file would arrive in 8 KiB blocks, after the cache). SIGKILL, since unattended-upgrade only
# notes a SIGTERM; a dry run has nothing to leave half done. A dry run refuses to start while
# another unattended-upgrade holds its lock (on a first harden, the apt-daily-upgrade run the
# fresh host started on its own): the check waits that out, every `pause` s up to `tries` times.
DRY_RUN_CHECK = (
    "out=$(mktemp) && {{ t=0; while :; do PYTHONUNBUFFERED=1 unattended-upgrade --dry-run -d "
    '>"$out" 2>&1 & '
    "pid=$!; i=0; while [ $i -lt 900 ] && kill -0 $pid 2>/dev/null && ! sed -n "
    "'/Allowed origins are:/{{n;p;q;}}' \"$out\" | grep -q .; do sleep 0.2; i=$((i + 1)); done; "
    "kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; "
    "grep -qiE 'lock (could|can) not be acquired' \"$out\" && [ $t -lt {tries} ] || break; "
    "t=$((t + 1)); sleep {pause}; done; "
    "grep -F 'Allowed origins are:' \"$out\" | grep -qF '{origin}'; ok=$?; "
    '[ $ok = 0 ] || tail -n 5 "$out" >&2; rm -f "$out"; [ $ok = 0 ]; }} || '
    "{{ echo 'unattended-upgrade would not use {origin}' >&2; exit 1; }}"
)


def dry_run_check(origin: str, pause: float = 5, tries: int = 180) -> str:
    """Shell that fails unless unattended-upgrade's dry run lists `origin` among the allowed,
    once no other unattended-upgrade holds the lock (waiting `pause` s, up to `tries` times)."""
    return DRY_RUN_CHECK.format(origin=origin, pause=pause, tries=tries)


@deploy("Security updates")
def updates(inventory_host: InventoryHost | None = None) -> None:
    conf = (inventory_host or current()).settings
    distro_id, codename = distro()
    origin = security_origin(distro_id, codename)
    if conf.updates.mail and not program_exists("sendmail"):
        logger.warning(
            "%s: bulwark.updates.mail is set but the host has no sendmail: unattended-upgrades "
            "cannot send its reports until an MTA (e.g. a null client) is installed",
            host.name,
        )
    check = dry_run_check(origin)
    config_files(
        name=f"unattended-upgrades with {distro_id} security origins, daily; checked by a dry run",
        files=[
            ConfigFile(
                "/etc/apt/apt.conf.d/50unattended-upgrades",
                render(
                    "apt/50unattended-upgrades.j2",
                    distro_id=distro_id,
                    codename=codename,
                    updates=conf.updates,
                ),
                then=check,
                checked=True,
            ),
            ConfigFile(
                "/etc/apt/apt.conf.d/20auto-upgrades",
                render("apt/20auto-upgrades.j2"),
                then=check,
                checked=True,
            ),
        ],
    )
    units_running(
        name="apt timers enabled: lists daily, upgrades daily",
        units=["apt-daily.timer", "apt-daily-upgrade.timer"],
    )
