"""First contact with a new host: a deploy user with the operator's key and sudo, proven to work.

bootstrap connects once as root (key or password) or as a sudo-capable user, creates the deploy
user, installs the operator's public key, grants passwordless sudo (validated with visudo), and
then proves the result in a NEW connection: key login as the deploy user and `sudo -n true`.
Hardening may only remove root or password login after that proof (see `require_proof`).

Every step first reads the host's state and changes only what differs, so a second run reports no
changes. A host where root login is already disabled is reached as the deploy user.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from bulwark.errors import AuthError, ConfigError, RemoteError
from bulwark.hosts.keys import KeyPair, fingerprint, public_key_blob
from bulwark.hosts.safety import vet
from bulwark.hosts.ssh import KnownHosts, Login, Session, Target, connect
from bulwark.settings.hosts import DeployUser
from bulwark.settings.load import first_error, read_json

APT_ENV = "DEBIAN_FRONTEND=noninteractive"
SUDOERS_DIR = "/etc/sudoers.d"
FIRST_USER_UID = 1000  # Debian's UID_MIN: ids below it are system accounts


@dataclass(frozen=True)
class AccessProof:
    """A fresh key login as the deploy user succeeded and `sudo -n true` passed."""

    host: str
    port: int
    user: str
    key_fingerprint: str
    host_key_fingerprint: str
    proved_at: float

    @property
    def target(self) -> Target:
        return Target(self.host, self.port)


@dataclass
class BootstrapReport:
    """What bootstrap did on one host."""

    target: Target
    connected_as: str
    changes: list[str] = field(default_factory=list)
    proof: AccessProof | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.target.host,
            "port": self.target.port,
            "connected_as": self.connected_as,
            "changed": bool(self.changes),
            "changes": self.changes,
            "proof": asdict(self.proof) if self.proof else None,
        }


class TrustStore:
    """The project's record of hosts: pinned host keys (known_hosts) and access proofs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.known_hosts = KnownHosts(directory / "known_hosts")
        self.proofs_file = directory / "access-proofs.json"

    def _load(self) -> dict[str, AccessProof]:
        if not self.proofs_file.exists():
            return {}
        try:
            return _PROOFS.validate_python(read_json(self.proofs_file))
        except ValidationError as exc:
            path, msg = first_error(exc)
            raise ConfigError(
                f"{self.proofs_file}: {path or 'the file'}: {msg}: remove that entry (or the "
                "file) and run `bulwark bootstrap` again"
            ) from None

    def record(self, proof: AccessProof) -> None:
        proofs = {name: asdict(p) for name, p in self._load().items()}
        proofs[str(proof.target)] = asdict(proof)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.proofs_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(proofs, indent=2, sort_keys=True) + "\n")
        tmp.rename(self.proofs_file)

    def proof_for(self, target: Target) -> AccessProof | None:
        return self._load().get(str(target))

    def check(self) -> None:
        """Refuse a proofs file of the wrong shape now, not after a run has changed a host."""
        self._load()


_PROOFS = TypeAdapter(dict[str, AccessProof])


def require_proof(store: TrustStore, target: Target, user: str) -> AccessProof:
    """The proof that `user` can log in by key and sudo; hardening calls this before removing
    root or password login, and refuses when there is none."""
    proof = store.proof_for(target)
    if proof is None or proof.user != user:
        raise ConfigError(
            f"no proof that {user}@{target} can log in by key and sudo: "
            f"run `bulwark bootstrap {target.host} --port {target.port}` first"
        )
    return proof


STEPS = 6  # what `bootstrap` reports through `progress`, in order, every run


def bootstrap(
    target: Target,
    first_login: Login,
    deploy: DeployUser,
    deploy_key: KeyPair,
    store: TrustStore,
    progress: Callable[[str], None] | None = None,
) -> BootstrapReport:
    """Make `deploy` a key-login sudo user on `target` and prove it; idempotent. `progress`
    hears each of the STEPS as it starts."""
    say = progress or (lambda _msg: None)
    target = vet(target)
    deploy_login = Login(deploy.name, key=deploy_key)
    say(f"connecting (as {deploy.name} if it is set up, else {first_login.user})")
    admin, via_deploy = _admin_session(target, first_login, deploy_login, store)
    report = BootstrapReport(target, connected_as=admin.login.user)
    with admin:
        _refuse_system_account(admin, deploy)
        say("sudo: installed?" if not via_deploy else f"sudo: works for {deploy.name} already")
        if not via_deploy:
            _ensure_sudo_installed(admin, report)
        say(f"user {deploy.name}")
        home = _ensure_user(admin, deploy, report)
        say(f"{deploy.name}'s authorized key")
        _ensure_authorized_key(admin, deploy, home, deploy_key, report)
        say(f"sudoers rule for {deploy.name}")
        _ensure_sudoers(admin, deploy, report)
    say(f"proving {deploy.name} gets in by key and runs sudo -n, in a fresh login")
    report.proof = prove_access(target, deploy_login, store.known_hosts)
    store.record(report.proof)
    return report


def _admin_session(
    target: Target, first_login: Login, deploy_login: Login, store: TrustStore
) -> tuple[Session, bool]:
    """Connect as the deploy user when that already works with sudo, else as `first_login`.

    Trying the deploy user first means a host whose root login is already off still works, and
    a bootstrapped host is never touched as root again.
    """
    try:
        session = connect(target, deploy_login, store.known_hosts)
    except AuthError:
        pass
    else:
        if session.run("sudo -n true", check=False).ok:
            return session, True
        session.close()
    session = connect(target, first_login, store.known_hosts)
    if not session.is_root and not session.run("true", sudo=True, check=False).ok:
        session.close()
        raise AuthError(
            f"{first_login.user}@{target} cannot use sudo: "
            "connect as root or as a sudo-capable user"
        )
    return session, False


def _ensure_sudo_installed(s: Session, report: BootstrapReport) -> None:
    if s.run("command -v sudo", check=False).ok:
        return
    s.run(
        f"{APT_ENV} apt-get -o DPkg::Lock::Timeout=120 update -q && "
        f"{APT_ENV} apt-get -o DPkg::Lock::Timeout=120 install -y -q sudo",
        sudo=True,
    )
    report.changes.append("installed sudo")


def _ensure_user(s: Session, deploy: DeployUser, report: BootstrapReport) -> str:
    """Create the deploy user if missing; return its home directory."""
    name = shlex.quote(deploy.name)
    entry = s.run(f"getent passwd {name}", check=False)
    if not entry.ok:
        s.run(
            f"useradd --create-home --user-group --shell {shlex.quote(deploy.shell)} {name} && "
            # '*' (not '!'): no password can ever match, yet sshd does not treat it as locked.
            f"usermod -p '*' {name}",
            sudo=True,
        )
        report.changes.append(f"created user {deploy.name}")
        entry = s.run(f"getent passwd {name}")
    return entry.stdout.strip().split(":")[5]


def _refuse_system_account(s: Session, deploy: DeployUser) -> None:
    """Before anything changes: an existing account below Debian's first user id belongs to a
    service (postgres, www-data...), which bootstrap would give a login key and sudo for all."""
    entry = s.run(f"getent passwd {shlex.quote(deploy.name)}", check=False)
    uid = entry.stdout.strip().split(":")[2] if entry.ok else None
    if uid is not None and int(uid) < FIRST_USER_UID:
        raise ConfigError(
            f"{deploy.name} is a system account on {s.target} (uid {uid}): choose a dedicated "
            "deploy user (--deploy-user)"
        )


def _ensure_authorized_key(
    s: Session, deploy: DeployUser, home: str, key: KeyPair, report: BootstrapReport
) -> None:
    user = shlex.quote(deploy.name)
    ssh_dir = shlex.quote(f"{home}/.ssh")
    auth = shlex.quote(f"{home}/.ssh/authorized_keys")
    current = s.run(f"cat {auth} 2>/dev/null", sudo=True, check=False).stdout
    wanted = public_key_blob(key.public_line)
    present = any(
        public_key_blob(line) == wanted
        for line in current.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not present:
        s.run(
            f"install -d -m 700 -o {user} -g $(id -gn {user}) {ssh_dir} && "
            f"cat >> {auth} && chown {user}: {auth} && chmod 600 {auth}",
            sudo=True,
            stdin=key.public_line + "\n",
        )
        report.changes.append(f"installed key {key.fingerprint} for {deploy.name}")
    # sshd's StrictModes ignores keys in a directory or file others can write.
    modes = s.run(f"stat -c '%a %U' {ssh_dir} {auth}", sudo=True).stdout.split()
    if modes != ["700", deploy.name, "600", deploy.name]:
        s.run(
            f"chown {user}: {ssh_dir} {auth} && chmod 700 {ssh_dir} && chmod 600 {auth}", sudo=True
        )
        report.changes.append(f"fixed owner and modes of {home}/.ssh")


def sudoers_rule(deploy: DeployUser) -> str:
    return (
        "# Managed by bulwark bootstrap: passwordless sudo for automation (the deploy user has no\n"
        "# password; its key is the credential).\n"
        f"{deploy.name} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    )


def _ensure_sudoers(s: Session, deploy: DeployUser, report: BootstrapReport) -> None:
    path = f"{SUDOERS_DIR}/bulwark-{deploy.name}"
    wanted = sudoers_rule(deploy)
    current = s.run(f"cat {shlex.quote(path)} 2>/dev/null", sudo=True, check=False)
    if current.ok and current.stdout == wanted:
        return
    tmp = shlex.quote(f"{path}.bulwark-tmp")
    # sudo ignores files whose names contain '.', so the temporary file is never live; visudo
    # checks it before it takes the real name: a broken sudoers file would lock sudo out.
    s.run(
        f"umask 077 && cat > {tmp} && visudo -cqf {tmp} && chmod 0440 {tmp} && "
        f"mv -f {tmp} {shlex.quote(path)}",
        sudo=True,
        stdin=wanted,
    )
    report.changes.append(f"granted passwordless sudo to {deploy.name} ({path})")


def prove_access(target: Target, login: Login, known_hosts: KnownHosts) -> AccessProof:
    """In a new connection: log in as `login` by key, check the user and that `sudo -n` works."""
    try:
        with connect(target, login, known_hosts) as s:
            return proof_from(s)
    except AuthError as exc:
        raise RemoteError(f"bootstrap could not prove key login: {exc}") from None


def proof_from(s: Session) -> AccessProof:
    """The proof a key-authenticated session gives: it is the user it claims and sudo -n works."""
    login = s.login
    assert login.key is not None
    whoami = s.run("id -un").stdout.strip()
    sudo = s.run("sudo -n true", check=False)
    if whoami != login.user or not sudo.ok:
        raise RemoteError(
            f"could not prove access: {login.user}@{s.target} "
            f"{'is ' + whoami if whoami != login.user else 'cannot run sudo -n'}; "
            "nothing that removes the old way in was done"
        )
    return AccessProof(
        host=s.target.host,
        port=s.target.port,
        user=login.user,
        key_fingerprint=login.key.fingerprint,
        host_key_fingerprint=fingerprint(s.host_key),
        proved_at=time.time(),
    )
