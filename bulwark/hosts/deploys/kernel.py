"""Kernel and file system: sysctl, unused modules off, /tmp and /dev/shm nodev,nosuid,noexec,
/proc hiding each user's processes from the others, no core dumps, one time sync daemon, sudo
with a pty and a log. (The login umask is set with the other login.defs keys, in the accounts
area.)"""

from __future__ import annotations

import hashlib
from typing import Any

from pyinfra import host, logger
from pyinfra.api import deploy, operation
from pyinfra.facts.files import Sha1File

from bulwark.hosts.commands import PROC_GROUP, PROC_VIEWERS, SUID_DENYLIST
from bulwark.hosts.deploys.context import current
from bulwark.hosts.facts import Mount, MountStates, ProcExemptions
from bulwark.hosts.inventory import InventoryHost
from bulwark.hosts.operations import (
    ConfigFile,
    config_files,
    fact,
    file_states,
    forget,
    line_in,
    permissions,
    program_exists,
    put_files,
    units_running,
)
from bulwark.hosts.templates import render

MOUNT_OPTIONS = ("nodev", "nosuid", "noexec")
TMPFS_PATHS = ("/tmp", "/dev/shm")  # noqa: S108 - these are the mounts we harden
SUDO_DEFAULTS = "/etc/sudoers.d/bulwark-defaults"
ROOT_ONLY = {
    "/etc/ssh/sshd_config": "600",
    "/etc/crontab": "600",
    **{f"/etc/cron.{d}": "700" for d in ("hourly", "daily", "weekly", "monthly", "d")},
}


# An fstab entry (not a comment) for the mount point the key names.
FSTAB_ENTRY = '$1 !~ /^#/ && $2 == ENVIRON["BULWARK_KEY"]'


def fstab_regex(mount_point: str) -> str:
    """What FSTAB_ENTRY selects, as grep -E and sed -E read it (for --diff's files.line)."""
    return f"^[[:space:]]*[^#[:space:]][^[:space:]]*[[:space:]]+{mount_point}([[:space:]]|$)"


def tmpfs_line(path: str, size: str) -> str:
    return f"tmpfs {path} tmpfs rw,{','.join(MOUNT_OPTIONS)},mode=1777,size={size} 0 0"


@operation()
def hardened_tmpfs(paths: list[str], size: str):  # type: ignore[no-untyped-def]
    """Mount each path as a tmpfs with nodev,nosuid,noexec now and at boot (fstab).

    + paths: /tmp, /dev/shm
    + size: tmpfs size (e.g. "25%")
    """
    state = fact(MountStates, paths=paths)
    todo: list[Any] = []
    for path in paths:
        found = state.get(path, Mount())
        line = tmpfs_line(path, size)
        if found.fstab != line:
            todo.extend(line_in("/etc/fstab", line, FSTAB_ENTRY, key=path, regex=fstab_regex(path)))
        if found.type is None:
            todo.append(f"mount {path}")
        elif not set(MOUNT_OPTIONS) <= set(found.options):
            # A fresh tmpfs over a live /tmp would hide its files from running programs: remount.
            if found.type == "tmpfs":
                todo.append(f"mount -o remount,{','.join(MOUNT_OPTIONS)} {path}")
            else:
                todo.append(f"mount {path}")
    if not todo:
        host.noop(f"{' and '.join(paths)} are mounted {','.join(MOUNT_OPTIONS)}")
        return
    if host.state.config.DIFF:  # files.line's commands, which print the fstab lines they change
        yield from todo
        return
    yield " && ".join(todo)  # one round trip for all


# hidepid by the name /proc/mounts shows (kernel >= 5.8), and the flags systemd mounts /proc
# with: at boot systemd-remount-fs remounts /proc with exactly this line's options, so
# `defaults` would turn nosuid,nodev,noexec off.
PROC_LINE = (
    f"proc /proc proc rw,nosuid,nodev,noexec,relatime,hidepid=invisible,gid={PROC_GROUP} 0 0"
)
PROC_OPTIONS = ("nosuid", "nodev", "noexec", "hidepid=invisible")
PROC_DROPINS = tuple(f"/etc/systemd/system/{unit}.d/bulwark-hidepid.conf" for unit in PROC_VIEWERS)
PROC_DROPIN = (
    "# Managed by bulwark: /proc hides other users' processes (hidepid); this service must\n"
    f"# see them all, as the group {PROC_GROUP} does.\n"
    f"[Service]\nSupplementaryGroups={PROC_GROUP}\n"
)


# A host that cannot remount /proc (a container's is its runtime's) stops the run with the fix.
PROC_REMOUNT = (
    "mount -o remount /proc || { echo 'bulwark: /proc cannot be remounted with hidepid on this "
    "host (a container?): set bulwark.kernel.hide_processes: false for it' >&2; exit 1; }"
)


def proc_hidden(mount: Mount, gid: str | None) -> bool:
    """Whether the live /proc hides processes, keeps its flags and exempts the group `gid`."""
    return (
        mount.type == "proc"
        and set(PROC_OPTIONS) <= set(mount.options)
        and gid is not None
        and f"gid={gid}" in mount.options
    )


@operation()
def hidden_processes():  # type: ignore[no-untyped-def]
    """Mount /proc with hidepid=invisible now and at boot (fstab): a user sees only their own
    processes; root and the group `proc` see all, and the services that must (systemd-logind,
    polkit) hold that group before /proc changes.
    """
    mount = fact(MountStates, paths=["/proc"]).get("/proc", Mount())
    exempt = fact(ProcExemptions)
    dropins = [ConfigFile(path, PROC_DROPIN) for path in PROC_DROPINS]
    states = file_states(list(PROC_DROPINS))
    stale = [f for f in dropins if states.get(f.dest) != f.state]
    # A running service holds the group only once restarted with its drop-in and the group in
    # place: checked on every run, so a run cut off before the restart is mended by the next.
    restart = [u for u, gids in exempt.running.items() if stale or exempt.gid not in gids]
    if not stale and not restart and mount.fstab == PROC_LINE and proc_hidden(mount, exempt.gid):
        host.noop("/proc hides each user's processes from the others")
        return
    # The group before the drop-ins: a unit whose SupplementaryGroups names a missing group
    # does not start.
    if exempt.gid is None:
        yield f"getent group {PROC_GROUP} >/dev/null || groupadd --system {PROC_GROUP}"
    if stale:
        forget("files")
        yield from put_files(stale)
    if stale or restart:
        steps = ["systemctl daemon-reload"] if stale else []
        steps += [f"systemctl restart {' '.join(restart)}"] if restart else []
        yield " && ".join(steps)
    if mount.fstab != PROC_LINE:
        if mount.fstab and "hidepid" in mount.fstab:
            logger.warning(
                "%s: /etc/fstab's own /proc line (%s) is replaced by bulwark's: the group it "
                "exempted, if not %s, sees only its own processes now (add its members to %s)",
                host.name,
                mount.fstab,
                PROC_GROUP,
                PROC_GROUP,
            )
        yield from line_in(
            "/etc/fstab", PROC_LINE, FSTAB_ENTRY, key="/proc", regex=fstab_regex("/proc")
        )
    if mount.fstab != PROC_LINE or not proc_hidden(mount, exempt.gid):
        # Only the mount point: mount takes the options from fstab, as systemd-remount-fs
        # does at boot, so this run proves the boot's line.
        yield PROC_REMOUNT


@operation()
def sudoers_defaults(content: str):  # type: ignore[no-untyped-def]
    """Install sudoers defaults only after `visudo -c` accepts them (a broken file locks sudo).

    + content: the sudoers snippet
    """
    tmp = SUDO_DEFAULTS + ".bulwark-new"  # sudo ignores names with '.', so never live
    if (
        fact(Sha1File, path=SUDO_DEFAULTS)
        == hashlib.sha1(content.encode(), usedforsecurity=False).hexdigest()
    ):
        host.noop("sudo defaults are in place")
        return
    yield from put_files([ConfigFile(tmp, content, mode="440")])
    yield f"visudo -cqf {tmp} && mv -f {tmp} {SUDO_DEFAULTS}"


@deploy("Kernel and file system")
def kernel(inventory_host: InventoryHost | None = None) -> None:
    conf = (inventory_host or current()).settings.kernel
    if "squashfs" in conf.disabled_filesystems and program_exists("snap"):
        logger.warning(
            "%s: snapd is installed and mounts every snap as squashfs; with squashfs disabled "
            "(bulwark.kernel.disabled_filesystems) snaps stop working at the next boot: remove "
            "it from that list on this host",
            host.name,
        )
    nocore = "# Managed by bulwark: a core dump can hold secrets.\n"
    config_files(
        name="sysctl hardening (dev-sec set), unused modules off, no core dumps",
        files=[
            ConfigFile(
                "/etc/sysctl.d/60-bulwark.conf",
                render(
                    "kernel/60-bulwark.conf.j2",
                    routes_or_containers=conf.routes_or_containers,
                    ipv6_autoconf=conf.ipv6_autoconf,
                ),
                then="sysctl -q --system",
                checked=True,
            ),
            ConfigFile(
                "/etc/sysctl.d/99-protect-links.conf",
                render("kernel/99-protect-links.conf.j2"),
                then="sysctl -q --system",
                checked=True,
            ),
            ConfigFile(
                "/etc/modprobe.d/bulwark-disabled.conf",
                render(
                    "kernel/bulwark-modules.conf.j2",
                    modules=[
                        *conf.disabled_filesystems,
                        *conf.disabled_protocols,
                        *conf.disabled_devices,
                    ],
                ),
            ),
            # `*` does not cover root in pam_limits, and Debian 13's 10-coredump-debian.conf
            # gives root `hard core infinity`: this file sorts after it, and the last one wins.
            ConfigFile(
                "/etc/security/limits.d/bulwark-nocore.conf",
                nocore + "*    hard core 0\nroot hard core 0\n",
            ),
            ConfigFile(
                "/etc/systemd/coredump.conf.d/bulwark.conf",
                nocore + "[Coredump]\nStorage=none\nProcessSizeMax=0\n",
            ),
        ],
    )
    if conf.harden_tmp:
        hardened_tmpfs(
            name=f"{' and '.join(TMPFS_PATHS)} nodev,nosuid,noexec",
            paths=list(TMPFS_PATHS),
            size="25%",
        )
    if conf.hide_processes:
        hidden_processes(name="/proc hides each user's processes from the others (hidepid)")
    chrony = program_exists("chronyd")
    timesync = "chrony.service" if chrony else "systemd-timesyncd.service"
    units_running(name=f"Time sync: {timesync}", units=[timesync])
    permissions(
        name="sshd_config and cron root's only; no setuid/setgid bit on programs a server "
        "does not need (dev-sec's list: ssh-keysign, dotlockfile, arping, mtr...)",
        root_only=ROOT_ONLY,
        no_setuid=sorted(SUID_DENYLIST),
    )
    sudoers_defaults(
        name="sudo: a pty for every command, and a log file",
        content=(
            "# Managed by bulwark.\n"
            "# A pty keeps a sudo'd program from pushing input into the caller's terminal.\n"
            "Defaults use_pty\n"
            "# Every sudo command is logged here as well as to the journal.\n"
            'Defaults logfile="/var/log/sudo.log"\n'
        ),
    )
