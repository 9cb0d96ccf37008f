"""What every deploy needs from pyinfra's host: who it is, how we reach it, its settings."""

from __future__ import annotations

from pyinfra import host

from bulwark.hosts.inventory import InventoryHost, from_data


def current() -> InventoryHost:
    """The host pyinfra is preparing operations for, validated like `bulwark harden` does."""
    data: dict[str, object] = host.data.dict()  # type: ignore[no-untyped-call]
    return from_data(host.name, data)
