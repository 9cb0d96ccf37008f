"""Address ranges as UFW prints them, so declared and applied firewall rules compare equal."""

from __future__ import annotations

import ipaddress
import re

# What an address or a range is written with. Python's ipaddress also takes an IPv6 zone index
# ("fe80::1%eth0"), whose text after the % may be anything, quotes, spaces and newlines
# included; it would reach a ufw command line, jail.local and pgbouncer.ini as it is written.
ADDRESS_CHARS = re.compile(r"[0-9A-Fa-f:./]+")


def check_address_text(value: str) -> str:
    """`value` if it is written with address characters only (no zone index); ValueError
    otherwise."""
    if not ADDRESS_CHARS.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an IP address or CIDR range: write digits, '.', ':' and '/' "
            "only (no %zone: the host's own routes pick the interface)"
        )
    return value


def ufw_source(value: str) -> str:
    """'any', a single address (a /32 or /128 is written without its prefix, as UFW prints it),
    or a network written from its network address; ValueError otherwise."""
    if value == "any":
        return value
    network = ipaddress.ip_network(check_address_text(value), strict=False)
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)
