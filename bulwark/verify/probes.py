"""Black-box probes: what the host does for a stranger on the network. Each probe opens its own
connection (sshd refuses a change of user within one), checks the host key against the pinned
known_hosts first, and never sends a password."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko


@dataclass
class Access:
    methods: list[str]
    accepted: list[Path]


class TrustError(Exception):
    """The host's key is not the pinned one (or none is pinned): nothing it says can be trusted."""


@dataclass(frozen=True)
class Endpoint:
    alias: str
    host: str
    port: int  # where the controller reaches sshd
    user: str
    identity: Path | None
    known_hosts: Path | None
    forwarded: dict[int, int] = field(default_factory=dict)
    probe_keys: tuple[Path, ...] = ()
    # The name the host key is pinned under when it is not host:port (ssh_config HostKeyAlias).
    host_key_alias: str | None = None

    def reach(self, port: int) -> int:
        """The port the controller connects to for `port` on the host."""
        return self.forwarded.get(port, port)

    @property
    def known_hosts_name(self) -> str:
        if self.host_key_alias:
            return self.host_key_alias
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def resolve_endpoint(
    alias: str,
    ssh_config: str | None,
    *,
    user: str | None = None,
    port: str | None = None,
    identity: str | None = None,
    forwarded: dict[int, int] | None = None,
    probe_keys: list[Path] | None = None,
) -> Endpoint:
    """Ask OpenSSH (`ssh -G`) how it would reach `alias`, so probes go where testinfra goes;
    the user, port and key given in `--hosts=ssh://user@alias:port` (or testinfra's
    --ssh-identity-file) win over the config file, as they do for testinfra."""
    cmd = ["ssh", "-G", *(["-F", ssh_config] if ssh_config else [])]
    cmd += [*(["-l", user] if user else []), *(["-p", port] if port else [])]
    cmd += [*(["-i", identity] if identity else []), alias]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    conf: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        conf.setdefault(key, value)
    identity = conf.get("identityfile")
    known = conf.get("userknownhostsfile", "").split()
    return Endpoint(
        alias=alias,
        host=conf["hostname"],
        port=int(conf["port"]),
        user=conf["user"],
        identity=Path(identity).expanduser() if identity else None,
        known_hosts=Path(known[0]).expanduser() if known else None,
        forwarded=dict(forwarded or {}),
        probe_keys=tuple(probe_keys or ()),
        host_key_alias=conf.get("hostkeyalias"),
    )


# UFW's SSH rate limit refuses a source's 6th new connection within 30 s, and counts the
# refused tries too: a retry must wait out the whole window, or it only keeps the limit on.
RATE_LIMIT_PAUSE = 31.0


def _transport(ep: Endpoint, timeout: float = 15, retries: int = 1) -> paramiko.Transport:
    """A connected, host-key-checked transport; a connection the rate limit refused (a verify
    right after another one) is tried again once the limit's window has passed."""
    for attempt in range(retries + 1):
        try:
            return _connect(ep, timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if isinstance(exc, paramiko.BadHostKeyException) or attempt == retries:
                raise
            time.sleep(RATE_LIMIT_PAUSE)
    raise AssertionError("unreachable")


def _connect(ep: Endpoint, timeout: float) -> paramiko.Transport:
    sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.auth_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        check_host_key(ep, transport.get_remote_server_key())
    except BaseException:
        transport.close()
        raise
    return transport


def check_host_key(ep: Endpoint, key: paramiko.PKey) -> None:
    if ep.known_hosts is None or not ep.known_hosts.is_file():
        raise TrustError(f"{ep.alias}: no known_hosts file pins this host's key")
    pinned: dict[str, paramiko.PKey] = dict(
        paramiko.HostKeys(str(ep.known_hosts)).lookup(ep.known_hosts_name) or {}
    )
    if not pinned:
        raise TrustError(
            f"{ep.alias}: no key is pinned for {ep.known_hosts_name} in {ep.known_hosts}: "
            "bootstrap the host first (it pins the key)"
        )
    if pinned.get(key.get_name()) != key:
        raise TrustError(
            f"{ep.alias}: host key {key.get_name()} {key.fingerprint} is not the pinned one "
            f"for {ep.known_hosts_name}: the host changed or someone is in between"
        )


def offered_methods(ep: Endpoint, user: str, keys: list[Path] | None = None) -> Access:
    """What sshd offers `user` before any credential (["none"] if it lets the user in without
    one), then which of `keys` log the user in: one connection, as a scanner would try it
    (a firewall that rate-limits SSH counts connections, not attempts)."""
    access = Access(methods=[], accepted=[])
    transport = _transport(ep)
    try:
        try:
            transport.auth_none(user)
            access.methods.append("none")
            return access
        except paramiko.BadAuthenticationType as exc:
            access.methods.extend(sorted(exc.allowed_types))
        except paramiko.AuthenticationException:
            pass
        for path in keys or []:
            if not transport.is_active():
                break  # sshd hung up after MaxAuthTries: the rest were not tried
            try:
                transport.auth_publickey(user, paramiko.PKey.from_path(path))
                if transport.is_authenticated():
                    access.accepted.append(path)
                    break
            except paramiko.AuthenticationException:
                pass
    finally:
        transport.close()
    return access


def port_answers(host: str, port: int, marker: bytes, timeout: float = 8) -> bool:
    """Whether a listener on the host that greets with `marker` is reachable on `port`. (A TCP
    handshake alone proves nothing behind NAT or port forwarding: only the greeting does.)"""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            deadline = time.monotonic() + timeout
            while marker not in data and time.monotonic() < deadline:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            return marker in data
    except OSError:
        return False


def ssh_refused(ep: Endpoint, timeout: float = 8) -> bool:
    """Whether a new SSH connection fails before the banner (how a ufw ban looks)."""
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return not sock.recv(64).startswith(b"SSH-")
    except OSError:
        return True


def failed_logins(ep: Endpoint, attempts: int) -> int:
    """Fail key authentication up to `attempts` times as users that do not exist (what a scanner
    does); how many tries reached sshd."""
    # A real key, but for users that do not exist: every try is an "Invalid user" sshd logs.
    assert ep.identity is not None
    key = paramiko.PKey.from_path(ep.identity)
    for attempt in range(attempts):
        try:
            transport = _transport(ep, timeout=8, retries=0)
        except (OSError, paramiko.SSHException, EOFError):
            return attempt  # already refused: banned
        try:
            transport.auth_publickey(f"bulwark-probe{attempt}", key)
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            transport.close()
    return attempts
