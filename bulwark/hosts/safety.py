"""Never bootstrap, harden or verify the machine bulwark runs on: it would rewrite our own sshd
and firewall. The guard judges addresses, not spellings: the target's name is resolved (every
A and AAAA answer) and refused if any answer is this machine (loopback, unspecified, an
IPv4-mapped loopback, or one of its own interface addresses). The one exception is a running
lab VM, which qemu forwards from a 127.0.0.1 port that the lab's registry names.

The vetted address travels with the target, and SSH connections go to it rather than
resolving the name again (a name that answers differently a moment later cannot redirect them).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import replace

import psutil

from bulwark.errors import ConfigError
from bulwark.hosts.ssh import Target
from bulwark.lab.ports import LAB_ADDRESS, lab_ports

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def own_addresses() -> frozenset[IPAddress]:
    """Every address of this machine's network interfaces."""
    found: set[IPAddress] = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                found.add(ipaddress.ip_address(entry.address.split("%")[0]))
    return frozenset(found)


def is_this_machine(address: IPAddress, own: frozenset[IPAddress]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified or address in own


def resolve(target: Target) -> list[IPAddress]:
    """Every address `target.host` resolves to, in the resolver's order; ConfigError if none."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(
            f"cannot resolve host {target.host!r} ({exc}): check the name, or use its address"
        ) from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def vet(target: Target) -> Target:
    """`target` with the address bulwark will connect to, after refusing this machine.

    Raises ConfigError before any connection when the name reaches this machine (and is not a
    running lab VM's forwarded port), or does not resolve at all."""
    if target.host.startswith("@"):
        raise ConfigError(
            f"{target.host} is a pyinfra connector for this machine or a container, not an SSH "
            "host: bulwark never bootstraps, hardens or verifies the machine it runs on"
        )
    given = target.address
    addresses = [ipaddress.ip_address(given)] if given is not None else resolve(target)
    own = own_addresses()
    local = [a for a in addresses if is_this_machine(a, own)]
    if not local:
        return replace(target, address=str(addresses[0]))
    lab = ipaddress.ip_address(LAB_ADDRESS)
    if lab in local and target.port in lab_ports() and len(local) == len(addresses):
        return replace(target, address=LAB_ADDRESS)
    shown = ", ".join(str(a) for a in local)
    raise ConfigError(
        f"{target} resolves to {shown}, this machine, not a lab VM: bulwark never bootstraps, "
        "hardens or verifies the machine it runs on (use `bulwark lab up` for a local test host)"
    )
