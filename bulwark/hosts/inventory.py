"""Read a pyinfra inventory the way pyinfra does, and check it before any host is contacted."""

from __future__ import annotations

import fnmatch
import ipaddress
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pyinfra.api import Config, State
from pyinfra.context import ctx_config, ctx_state

from bulwark.dirs import project_root
from bulwark.errors import ConfigError
from bulwark.hosts.bootstrap import TrustStore, require_proof
from bulwark.hosts.keys import hardened_sshd_refuses, load_key
from bulwark.hosts.safety import vet
from bulwark.hosts.ssh import Target
from bulwark.settings.endpoints import (
    HostName,
    LoginUser,
    Port,
    SafePath,
    check_host,
    check_inventory_name,
    check_limit,
)
from bulwark.settings.hosts import HardenSettings, harden_settings
from bulwark.settings.load import first_error

DEFAULT_KNOWN_HOSTS = Path("hosts/known_hosts")


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
    # Whether the inventory names the known_hosts file pyinfra checks host keys against.
    pins_host_keys: bool = True

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


class Connection(BaseModel):
    """How pyinfra reaches one host, from its inventory data: validated before any use, since
    every value reaches an SSH connection, a command line or a file path."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # the rest is pyinfra's business

    ssh_hostname: HostName | None = None
    ssh_port: Port = 22
    ssh_user: LoginUser = "root"
    ssh_key: SafePath | None = None
    ssh_known_hosts_file: SafePath = DEFAULT_KNOWN_HOSTS
    # Hosts behind NAT or port forwarding: port inside the host -> port the controller reaches.
    bulwark_forwarded_ports: dict[Port, Port] = {}


# pyinfra host data that would connect somewhere, or with something, bulwark did not check: an
# ssh_config (HostName, ProxyCommand), paramiko's own arguments, a password in the inventory, the
# operator's agent forwarded to the host being hardened.
REFUSED_DATA = {
    "ssh_config_file": "bulwark connects by ssh_hostname, ssh_port and ssh_key alone: "
    "put the host's address, port and key there",
    "ssh_paramiko_connect_kwargs": "bulwark sets the connection itself: use ssh_hostname, "
    "ssh_port and ssh_key",
    "ssh_password": "harden logs in by key (bulwark bootstrap installs it): remove the password",
    "ssh_forward_agent": "the host being hardened gets no access to your agent: remove it",
}


def from_data(name: str, data: dict[str, Any]) -> InventoryHost:
    """Build an InventoryHost from pyinfra host data; an error names the host, field and fix."""
    try:
        name = check_inventory_name(name)
    except ValueError as exc:
        raise ConfigError(f"inventory: {exc}") from None
    try:
        conn = Connection.model_validate({k: v for k, v in data.items() if v is not None})
        host = conn.ssh_hostname or check_host(name)
    except ValueError as exc:  # pydantic's ValidationError is one too
        if isinstance(exc, ValidationError):
            path, msg = first_error(exc)
            raise ConfigError(f"{name}: {path}: {msg}") from None
        raise ConfigError(f"{name}: {exc}") from None
    return InventoryHost(
        name=name,
        target=Target(host, conn.ssh_port),
        user=conn.ssh_user,
        key_file=conn.ssh_key.expanduser() if conn.ssh_key else None,
        known_hosts=conn.ssh_known_hosts_file,
        settings=harden_settings(data.get("bulwark"), where=f"{name}: bulwark"),
        forwarded=dict(conn.bulwark_forwarded_ports),
        pins_host_keys="ssh_known_hosts_file" in data,
    )


def _load_error(path: Path, exc: BaseException) -> ConfigError:
    """One line for an inventory that fails to load: the exception and the inventory's line."""
    inner = getattr(exc, "exception", exc)  # pyinfra wraps the inventory's own exception
    line = getattr(inner, "lineno", None) if isinstance(inner, SyntaxError) else None
    tb = getattr(inner, "_traceback", None) or inner.__traceback__
    for frame, lineno in traceback.walk_tb(tb):
        if Path(frame.f_code.co_filename).resolve() == path.resolve():
            line = lineno
    where = f"{path}:{line}" if line else str(path)
    detail = str(inner).splitlines()[0] if str(inner) else ""
    kind = type(inner).__name__
    return ConfigError(
        f"{where}: inventory could not be loaded ({kind}{': ' + detail if detail else ''}): "
        "fix the inventory file"
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

    patterns: tuple[str, ...] = ()
    if limit is not None:
        try:
            patterns = check_limit(limit)
        except ValueError as exc:
            raise ConfigError(f"--limit: {exc}") from None
    try:
        # pyinfra's loader expects the config and state contexts its CLI sets up first.
        with ctx_config.use(Config()), ctx_state.use(State()):  # type: ignore[no-untyped-call]
            inventory = make_inventory(str(path))
    except (Exception, SystemExit) as exc:
        raise _load_error(path, exc) from None
    hosts = []
    base = project_of(path)
    for host in inventory:
        if patterns and not _matches(host.name, host.groups, patterns):
            continue
        data = host.data.dict()
        checked = from_data(host.name, data)
        # The inventory's own data only: inside harden's pyinfra run, bulwark's overrides (no
        # ssh_config) are host data too, and the deploys read it through from_data.
        for key, fix in REFUSED_DATA.items():
            if data.get(key) not in (None, False):
                raise ConfigError(f"{checked.name}: {key} is not supported: {fix}")
        hosts.append(_anchored(checked, base))
    seen: dict[str, str] = {}
    for h in hosts:
        other = seen.setdefault(h.target.known_hosts_name.lower(), h.name)
        if other != h.name:
            raise ConfigError(
                f"{h.name}: {h.target} is also host {other}: one machine, one inventory entry "
                "(two would get two sets of settings)"
            )
    if not hosts and limit is not None:
        raise ConfigError(f"no host in {path} matches --limit {limit}: check the name or group")
    if not hosts:
        raise ConfigError(f"{path} has no hosts: declare them as a pyinfra inventory does")
    return hosts


def project_of(inventory: Path) -> Path:
    """The folder an inventory's relative paths (its key, its known_hosts) are read from: the
    project around the inventory, so that harden and verify mean the same files from any
    folder; an inventory outside any project keeps the current folder."""
    return project_root(inventory.parent) or Path.cwd()


def _anchored(host: InventoryHost, base: Path) -> InventoryHost:
    key = host.key_file
    return replace(
        host,
        key_file=base / key if key is not None and not key.is_absolute() else key,
        known_hosts=host.known_hosts if host.known_hosts.is_absolute() else base / host.known_hosts,
    )


def _matches(name: str, groups: list[str], patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) or pattern in groups for pattern in patterns)


def preflight(hosts: list[InventoryHost]) -> None:
    """Everything that must hold before hardening touches any host (all hosts are checked first,
    so one bad host stops the run before the good ones change)."""
    for h in hosts:
        try:
            vet(h.target)
        except ConfigError as exc:
            raise ConfigError(f"{h.name}: {exc}") from None
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
        if weakness := hardened_sshd_refuses(key):
            raise ConfigError(f"{h.name}: ssh_key {h.key_file} {weakness}")
        if not h.pins_host_keys:
            raise ConfigError(
                f"{h.name}: ssh_known_hosts_file is not set: set it to {DEFAULT_KNOWN_HOSTS} "
                "(where bootstrap pinned the host key), or pyinfra trusts whatever key answers"
            )
        if not h.known_hosts.is_file():
            raise ConfigError(
                f"{h.name}: ssh_known_hosts_file {h.known_hosts} does not exist: run "
                f"`bulwark bootstrap {h.target.host}` first (it pins the host key there)"
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
