"""Address ranges as UFW prints them, so declared and applied firewall rules compare equal."""

from __future__ import annotations

import ipaddress


def ufw_source(value: str) -> str:
    """'any', a single address (a /32 or /128 is written without its prefix, as UFW prints it),
    or a network written from its network address; ValueError otherwise."""
    if value == "any":
        return value
    network = ipaddress.ip_network(value, strict=False)
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)
