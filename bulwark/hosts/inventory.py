"""Read a pyinfra inventory the way pyinfra does, and check it before any host is contacted."""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra.api import Config, State
from pyinfra.context import ctx_config, ctx_state

from bulwark.errors import ConfigError
from bulwark.hosts.bootstrap import TrustStore, require_proof
from bulwark.hosts.keys import load_key
from bulwark.hosts.safety import refuse_this_machine
from bulwark.hosts.ssh import Target
from bulwark.hosts.sshcrypto import RSA_HOST_KEY_BITS
from bulwark.settings.hosts import HardenSettings, harden_settings


@dataclass(frozen=True)
class InventoryHost:
    """One host of an inventory: how we reach it, as whom, and its validated settings."""

    name: str
    target: Target
    user: str
    key_file: Path | None
    known_hosts: Path
    settings: HardenSettings
    # Hosts behind port forwarding (lab VMs, NAT): port on the host -> port we reach it on.
    forwarded: dict[int, int]

    @property
    def sshd_port(self) -> int:
        """The port sshd listens on inside the host (the one its config and firewall name)."""
        for inside, outside in self.forwarded.items():
            if outside == self.target.port:
                return inside
        return self.target.port

    def reach(self, port: int) -> Target:
        """Where the controller connects to reach `port` on the host."""
        return Target(self.target.host, self.forwarded.get(port, port))

    @property
    def trust(self) -> TrustStore:
        return TrustStore(self.known_hosts.parent)


def from_data(name: str, data: dict[str, Any]) -> InventoryHost:
    """Build an InventoryHost from pyinfra host data; settings errors name the field."""
    key = data.get("ssh_key")
    forwarded = data.get("bulwark_forwarded_ports") or {}
    return InventoryHost(
        name=name,
        target=Target(str(data.get("ssh_hostname") or name), int(data.get("ssh_port") or 22)),
        user=str(data.get("ssh_user") or "root"),
        key_file=Path(str(key)).expanduser() if key else None,
        known_hosts=Path(str(data.get("ssh_known_hosts_file") or "hosts/known_hosts")),
        settings=harden_settings(data.get("bulwark"), where=f"{name}: bulwark"),
        forwarded={int(k): int(v) for k, v in forwarded.items()},
    )


def _pyinfra_inventory_loader() -> Callable[..., Any]:
    """pyinfra's own inventory loader, imported without the gevent `monkey.patch_all()` that
    `pyinfra_cli/__init__.py` runs for pyinfra's CLI: patching a process that already has
    threads (Pulumi's gRPC mock servers, pytest's) deadlocks it. Loading an inventory opens no
    connection; the deploys themselves run in a separate `python -m pyinfra` process."""
    from gevent import monkey  # noqa: PLC0415

    patch_all = monkey.patch_all
    monkey.patch_all = lambda *args, **kwargs: None
    try:
        from pyinfra_cli.inventory import make_inventory  # noqa: PLC0415
    finally:
        monkey.patch_all = patch_all
    return make_inventory  # type: ignore[no-any-return]


def load(path: Path, limit: str | None = None) -> list[InventoryHost]:
    """The inventory's hosts (optionally those matching `limit`), validated; raises ConfigError."""
    if not path.is_file():
        raise ConfigError(f"inventory {path} does not exist: pass a pyinfra inventory file")
    make_inventory = _pyinfra_inventory_loader()

    try:
        # pyinfra's loader expects the config and state contexts its CLI sets up first.
        with ctx_config.use(Config()), ctx_state.use(State()):  # type: ignore[no-untyped-call]
            inventory = make_inventory(str(path))
    except Exception as exc:
        raise ConfigError(f"inventory {path} could not be loaded: {exc}") from None
    hosts = []
    for host in inventory:
        if limit and not _matches(host.name, host.groups, limit):
            continue
        hosts.append(from_data(host.name, host.data.dict()))
    if not hosts:
        raise ConfigError(f"no host in {path} matches --limit {limit}: check the name or group")
    return hosts


def _matches(name: str, groups: list[str], limit: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) or pattern in groups for pattern in limit.split(","))


def preflight(hosts: list[InventoryHost]) -> None:
    """Everything that must hold before hardening touches any host (all hosts are checked first,
    so one bad host stops the run before the good ones change)."""
    for h in hosts:
        refuse_this_machine(h.target)
        if h.user == "root":
            raise ConfigError(
                f"{h.name}: ssh_user is root, but hardening turns root login off: "
                f"set ssh_user to the deploy user ({h.settings.deploy_user})"
            )
        if h.user not in h.settings.allowed_users:
            raise ConfigError(
                f"{h.name}: bulwark.ssh.allow_users {list(h.settings.allowed_users)} excludes "
                f"{h.user}, the user this run connects as: add it, or it would be locked out"
            )
        if h.key_file is None:
            raise ConfigError(f"{h.name}: ssh_key is not set: hardening logs in by key only")
        if not h.key_file.is_file():
            raise ConfigError(f"{h.name}: ssh_key {h.key_file} does not exist")
        key = load_key(h.key_file)
        bits = key.pkey.get_bits()
        if key.pkey.get_name() == "ssh-rsa" and bits < RSA_HOST_KEY_BITS:
            raise ConfigError(
                f"{h.name}: ssh_key {h.key_file} is a {bits}-bit RSA key, and the hardened sshd "
                f"refuses RSA keys under {RSA_HOST_KEY_BITS} bits (RequiredRSASize): use an "
                "ed25519 key"
            )
        proof = require_proof(h.trust, h.target, h.user)
        if proof.key_fingerprint != key.fingerprint:
            raise ConfigError(
                f"{h.name}: ssh_key {h.key_file} ({key.fingerprint}) is not the key bootstrap "
                f"proved for {h.user} ({proof.key_fingerprint}): point ssh_key at that key, or "
                f"run `bulwark bootstrap` with --deploy-key {h.key_file}"
            )


def login_refusal(h: InventoryHost, client: str | None, groups: list[str]) -> str | None:
    """Why hardening would lock out the very login it runs over, judged from what the host says
    of that login (the address it comes from, the user's groups); None when it would not."""
    sources = h.settings.firewall.ssh_sources
    if client and "any" not in sources:
        address = ipaddress.ip_address(client)
        if not any(address in ipaddress.ip_network(s, strict=False) for s in sources):
            return (
                f"{h.name}: bulwark.firewall.ssh_sources {list(sources)} excludes {client}, the "
                "address this run connects from: add it, or the firewall refuses the next login"
            )
    allow_groups = h.settings.ssh.allow_groups
    if allow_groups and not set(allow_groups) & set(groups):
        return (
            f"{h.name}: bulwark.ssh.allow_groups {list(allow_groups)} excludes {h.user} "
            f"(member of {' '.join(groups) or 'no group'}): add one of its groups, or sshd "
            "refuses its next login"
        )
    return None
