"""SSH sessions with paramiko: pinned host keys, the credentials given and no others, clear errors.

Host keys are trusted on first use and pinned into a known_hosts file the project owns; a later
change is refused with both fingerprints. Only the key or password passed in is offered: no agent
and no keys picked up from ~/.ssh, so what works here works the same in CI.
"""

from __future__ import annotations

import fcntl
import logging
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import paramiko

from bulwark.errors import AuthError, ConnectError, HostKeyError, RemoteError
from bulwark.hosts.keys import KeyPair, fingerprint

CONNECT_TIMEOUT = 20.0
# paramiko's transport thread logs every failed handshake with a traceback (a reset while sshd
# reloads, say). Our sessions log on a channel of their own that keeps quiet: each failure
# surfaces once, as the retry or the one-line error connect() raises.
TRANSPORT_LOG = "bulwark.ssh.transport"
logging.getLogger(TRANSPORT_LOG).setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Target:
    """An SSH endpoint."""

    host: str
    port: int = 22
    # The address the self-target guard vetted for `host` (bulwark.hosts.safety): connections
    # go there, so a name that answers differently a moment later cannot redirect them.
    address: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        if self.port == 22:
            return self.host
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH (and paramiko) name this endpoint in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class Login:
    """A user and the one credential to offer: a key or a password."""

    user: str
    key: KeyPair | None = None
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.key is not None:
            return f"key {self.key.fingerprint}"
        return "password" if self.password is not None else "no credential"


class KnownHosts:
    """A known_hosts file the project owns: trust on first use, then refuse any change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def keys_for(self, target: Target) -> dict[str, paramiko.PKey]:
        if not self.path.exists():
            return {}
        found = paramiko.HostKeys(str(self.path)).lookup(target.known_hosts_name)
        return dict(found) if found is not None else {}

    def pin(self, name: str, key: paramiko.PKey) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(f"{name} {key.get_name()} {key.get_base64()}\n")

    def load_into(self, client: paramiko.SSHClient) -> None:
        if self.path.exists():
            client.load_host_keys(str(self.path))
        # load_host_keys makes paramiko save on its own; we only ever append through pin().
        client._host_keys_filename = None  # type: ignore[attr-defined]


class _PinOnFirstUse(paramiko.MissingHostKeyPolicy):
    def __init__(self, known: KnownHosts) -> None:
        self.known = known

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.known.pin(hostname, key)


@dataclass(frozen=True)
class Result:
    """What a remote command returned."""

    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Session:
    """One authenticated SSH connection; runs commands, optionally through sudo."""

    def __init__(self, client: paramiko.SSHClient, target: Target, login: Login) -> None:
        self.client = client
        self.target = target
        self.login = login
        self._sudo_asks: bool | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    @property
    def host_key(self) -> paramiko.PKey:
        transport = self.client.get_transport()
        assert transport is not None
        return transport.get_remote_server_key()

    @property
    def is_root(self) -> bool:
        return self.login.user == "root"

    def _sudo_asks_password(self) -> bool:
        """Whether sudo wants this user's password (asked once per session). A user sudo lets
        through without one (NOPASSWD) must not be fed it: sudo would not read it, and the
        password would become the first line of the command's input (a file's content)."""
        if self._sudo_asks is None:
            probe = self.run("sudo -k -n sh -c true", check=False)
            self._sudo_asks = not probe.ok
        return self._sudo_asks

    def run(
        self,
        command: str,
        *,
        sudo: bool = False,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 300.0,
    ) -> Result:
        """Run `command` with sh; with `sudo`, as root (directly when we are root)."""
        wrapped = command
        feed = stdin or ""
        if sudo and not self.is_root:
            if self.login.password is not None and self._sudo_asks_password():
                # -S reads the password from stdin's first line; the command gets the rest. -k:
                # sudo asks even when it holds a cached credential, so it always takes that
                # line and the command never receives the password as input.
                wrapped = f"sudo -k -S -p '' sh -c {shlex.quote(command)}"
                feed = self.login.password + "\n" + feed
            else:
                wrapped = f"sudo -n sh -c {shlex.quote(command)}"
        try:
            chan_in, chan_out, chan_err = self.client.exec_command(wrapped, timeout=timeout)
            try:
                if feed:
                    chan_in.write(feed)
                chan_in.channel.shutdown_write()
                out = chan_out.read().decode(errors="replace")
                err = chan_err.read().decode(errors="replace")
                status = chan_out.channel.recv_exit_status()
            finally:
                chan_out.channel.close()  # free the session slot (sshd MaxSessions)
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectError(f"lost the SSH connection to {self.target}: {exc}") from None
        result = Result(command, status, out, err)
        if check and not result.ok:
            detail = (err.strip() or out.strip()).splitlines()[-1:] or ["no output"]
            raise RemoteError(f"on {self.target}: `{_short(command)}` exited {status}: {detail[0]}")
        return result


def _short(command: str, limit: int = 60) -> str:
    line = command.strip().splitlines()[0] if command.strip() else command
    return line if len(line) <= limit else line[: limit - 1] + "…"


def connect(
    target: Target,
    login: Login,
    known_hosts: KnownHosts,
    *,
    timeout: float = CONNECT_TIMEOUT,
    retries: int = 3,
) -> Session:
    """Open an authenticated session, or raise an error that names what failed and the fix.

    A connection reset before the banner is retried (`retries` times, backing off): sshd drops
    connections while it reloads, and throttles bursts (MaxStartups). Refusals are final.
    """
    for attempt in range(retries + 1):
        try:
            return _connect_once(target, login, known_hosts, timeout)
        except _TransientError as exc:
            if attempt == retries:
                raise ConnectError(f"SSH to {target} failed: {exc.__cause__}") from None
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


class _TransientError(Exception):
    """A connection dropped before the SSH handshake: worth another try."""


def _connect_once(target: Target, login: Login, known_hosts: KnownHosts, timeout: float) -> Session:
    client = paramiko.SSHClient()
    client.set_log_channel(TRANSPORT_LOG)
    known_hosts.load_into(client)
    client.set_missing_host_key_policy(_PinOnFirstUse(known_hosts))
    try:
        sock = None
        if target.address is not None:
            sock = socket.create_connection((target.address, target.port), timeout=timeout)
        client.connect(
            target.host,
            port=target.port,
            sock=sock,
            username=login.user,
            pkey=login.key.pkey if login.key else None,
            password=login.password,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"host key of {target} changed: pinned {fingerprint(exc.expected_key)}, offered "
            f"{fingerprint(exc.key)}; if the host was rebuilt, delete its line from "
            f"{known_hosts.path}, otherwise do not connect"
        ) from None
    except paramiko.BadAuthenticationType as exc:
        client.close()
        raise AuthError(
            f"{login.user}@{target} does not accept {login.describe()} login "
            f"(it allows: {', '.join(exc.allowed_types) or 'nothing'})"
        ) from None
    except paramiko.AuthenticationException:
        client.close()
        if login.password is not None:
            raise AuthError(
                f"{login.user}@{target} refused the password: check the password and user"
            ) from None
        raise AuthError(
            f"{login.user}@{target} refused {login.describe()}: add its public key to "
            f"~{login.user}/.ssh/authorized_keys or use a key the host accepts"
        ) from None
    except TimeoutError:
        client.close()
        raise ConnectError(
            f"cannot reach {target}: timed out after {timeout:.0f}s "
            "(check the address, the port and firewalls)"
        ) from None
    except socket.gaierror:
        client.close()
        raise ConnectError(f"cannot resolve host {target.host!r}: check the address") from None
    except (paramiko.ssh_exception.NoValidConnectionsError, ConnectionRefusedError):
        client.close()
        raise ConnectError(
            f"cannot reach {target}: connection refused (check the port and that sshd runs)"
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        # Dropped before the banner (EOF or reset, seen on read or on paramiko's own banner
        # write): sshd was reloading or throttling; qemu's user-mode network also accepts and
        # then closes while the guest's sshd is not there.
        dropped = EOFError | ConnectionResetError | BrokenPipeError
        if isinstance(exc, dropped) or isinstance(exc.__context__, dropped):
            raise _TransientError from exc
        raise ConnectError(f"SSH to {target} failed: {exc}") from None
    return Session(client, target, login)
