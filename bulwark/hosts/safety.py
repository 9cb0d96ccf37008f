"""Never bootstrap or harden the machine bulwark runs on: it would rewrite our own sshd and
firewall. Loopback targets are allowed only when they are a lab VM's forwarded port."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from bulwark.errors import ConfigError
from bulwark.hosts.ssh import Target
from bulwark.lab.vm import running  # the lab knows which loopback ports are its guests

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "@local", socket.gethostname()})


def is_loopback(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listening(target: Target) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((target.host, target.port), 2):
        return True
    return False


def refuse_this_machine(target: Target) -> None:
    """Raise unless `target` is safely not this machine's own sshd."""
    if target.host == "@local" or target.host.startswith("@local"):
        raise ConfigError("@local is this machine: bulwark never bootstraps or hardens it")
    if not is_loopback(target.host):
        return
    lab_ports = {p for vm in running() for p in (vm.ssh_port, *vm.forwards.values())}
    if target.port in lab_ports or not _listening(target):
        return
    raise ConfigError(
        f"{target} is this machine, not a lab VM: bulwark never bootstraps or hardens the "
        "machine it runs on (use `bulwark lab up` for a local test host)"
    )
