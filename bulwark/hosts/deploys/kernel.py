"""Kernel and file system: sysctl, unused modules off, /tmp and /dev/shm nodev,nosuid,noexec,
no core dumps, one time sync daemon, sudo with a pty and a log, a strict login umask."""

from __future__ import annotations

import hashlib
import io

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.facts.files import Sha1File
from pyinfra.facts.server import Mounts
from pyinfra.operations import files, server, systemd

from bulwark.hosts.deploys.context import current
from bulwark.hosts.facts import CommandExists
from bulwark.hosts.templates import render

MOUNT_OPTIONS = ("nodev", "nosuid", "noexec")
TMPFS_PATHS = ("/tmp", "/dev/shm")  # noqa: S108 - these are the mounts we harden
SUDO_DEFAULTS = "/etc/sudoers.d/bulwark-defaults"


@operation()
def hardened_tmpfs(path: str, size: str):  # type: ignore[no-untyped-def]
    """Mount `path` as a tmpfs with nodev,nosuid,noexec now and at boot (fstab).

    + path: /tmp or /dev/shm
    + size: tmpfs size (e.g. "25%")
    """
    line = f"tmpfs {path} tmpfs rw,{','.join(MOUNT_OPTIONS)},mode=1777,size={size} 0 0"
    yield from files.line._inner(path="/etc/fstab", line=rf"^\S+\s+{path}\s", replace=line)
    mount = host.get_fact(Mounts).get(path)
    if mount is None:
        yield f"mount {path}"
    elif not set(MOUNT_OPTIONS) <= set(mount.get("options", [])):
        # A fresh tmpfs over a live /tmp would hide its files from running programs: remount.
        if mount.get("type") == "tmpfs":
            yield f"mount -o remount,{','.join(MOUNT_OPTIONS)} {path}"
        else:
            yield f"mount {path}"
    else:
        host.noop(f"{path} is mounted {','.join(MOUNT_OPTIONS)}")


@operation()
def sudoers_defaults(content: str):  # type: ignore[no-untyped-def]
    """Install sudoers defaults only after `visudo -c` accepts them (a broken file locks sudo).

    + content: the sudoers snippet
    """
    tmp = SUDO_DEFAULTS + ".bulwark-new"  # sudo ignores names with '.', so never live
    if (
        host.get_fact(Sha1File, path=SUDO_DEFAULTS)
        == hashlib.sha1(content.encode(), usedforsecurity=False).hexdigest()
    ):
        host.noop("sudo defaults are in place")
        return
    yield from files.put._inner(src=io.StringIO(content), dest=tmp, mode="440")
    yield f"visudo -cqf {tmp} && mv -f {tmp} {SUDO_DEFAULTS}"


@deploy("Kernel and file system")
def kernel() -> None:
    conf = current().settings.kernel
    sysctl = files.put(
        name="sysctl hardening (dev-sec set)",
        src=io.StringIO(
            render("kernel/60-bulwark.conf.j2", routes_or_containers=conf.routes_or_containers)
        ),
        dest="/etc/sysctl.d/60-bulwark.conf",
        mode="644",
    )
    server.shell(
        name="Apply sysctl now",
        commands=["sysctl -q --system"],
        _if=sysctl.did_change,
    )
    files.put(
        name="Unused file systems and protocols cannot be loaded",
        src=io.StringIO(
            render(
                "kernel/bulwark-modules.conf.j2",
                modules=[*conf.disabled_filesystems, *conf.disabled_protocols],
            )
        ),
        dest="/etc/modprobe.d/bulwark-disabled.conf",
        mode="644",
    )
    if conf.harden_tmp:
        for path in TMPFS_PATHS:
            hardened_tmpfs(name=f"{path} nodev,nosuid,noexec", path=path, size="25%")
    files.put(
        name="No core dumps (limits)",
        src=io.StringIO("# Managed by bulwark: a core dump can hold secrets.\n* hard core 0\n"),
        dest="/etc/security/limits.d/bulwark-nocore.conf",
        mode="644",
    )
    files.put(
        name="No core dumps (systemd-coredump)",
        src=io.StringIO(
            "# Managed by bulwark: a core dump can hold secrets.\n[Coredump]\n"
            "Storage=none\nProcessSizeMax=0\n"
        ),
        dest="/etc/systemd/coredump.conf.d/bulwark.conf",
        mode="644",
        create_remote_dir=True,
    )
    if host.get_fact(CommandExists, program="chronyd"):
        systemd.service(name="Time sync: chrony", service="chrony", running=True, enabled=True)
    else:
        systemd.service(
            name="Time sync: systemd-timesyncd",
            service="systemd-timesyncd",
            running=True,
            enabled=True,
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
    files.line(
        name=f"login.defs UMASK {conf.umask}",
        path="/etc/login.defs",
        line=r"^UMASK\s",
        replace=f"UMASK\t\t{conf.umask}",
    )
