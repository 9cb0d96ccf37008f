"""PgBouncer in transaction mode (and, for lab and dev, a Postgres bound to localhost): SCRAM
auth with verifiers computed on the controller, pools sized by the connection budget, the
config proven by a throwaway PgBouncer before the live one reloads. UFW opens its port to the
declared client ranges only (bulwark/hosts/deploys/firewall.py)."""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, FactBase, OperationError, deploy, operation
from pyinfra.operations import files

from bulwark.hosts.deploys.context import current
from bulwark.hosts.facts import FileStates
from bulwark.hosts.inventory import InventoryHost
from bulwark.hosts.operations import (
    UPLOAD_DIR,
    ConfigFile,
    config_files,
    packages_present,
    put_secret,
    units_running,
)
from bulwark.hosts.templates import render
from bulwark.pooling import scram
from bulwark.settings.pooler import PgbouncerSettings

INI = "/etc/pgbouncer/pgbouncer.ini"
USERLIST = "/etc/pgbouncer/userlist.txt"
STAGE = UPLOAD_DIR


class PostgresState(FactBase[dict[str, object]]):
    """The local Postgres: its major version, login roles with their stored verifiers, and
    databases. Empty when Postgres is not installed or not running."""

    def command(self) -> str:
        return (
            "ls /etc/postgresql 2>/dev/null | sort -n | tail -1 | sed 's/^/version /'; "
            "command -v psql >/dev/null && runuser -u postgres -- psql -XAtq -c "
            "\"SELECT 'role ' || rolname || ' ' || coalesce(rolpassword, '') FROM pg_authid "
            "WHERE rolcanlogin UNION ALL SELECT 'db ' || datname FROM pg_database\" "
            "2>/dev/null; true"
        )

    @staticmethod
    def default() -> dict[str, object]:
        return {"version": None, "roles": {}, "databases": []}

    def process(self, output: list[str]) -> dict[str, object]:
        roles: dict[str, str] = {}
        databases: list[str] = []
        version = None
        for line in output:
            kind, _, rest = line.strip().partition(" ")
            if kind == "version":
                version = rest
            elif kind == "role":
                name, _, verifier = rest.partition(" ")
                roles[name] = verifier
            elif kind == "db":
                databases.append(rest)
        return {"version": version, "roles": roles, "databases": databases}


class UserlistVerifiers(FactBase[dict[str, str]]):
    """The verifiers in PgBouncer's current userlist.txt, by user."""

    def command(self) -> str:
        return f"cat {USERLIST} 2>/dev/null || true"

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        found = {}
        for line in output:
            parts = line.strip().split('"')
            if len(parts) >= 4:
                found[parts[1]] = parts[3]
        return found


class PgbouncerVersion(FactBase[tuple[int, int] | None]):
    """The installed PgBouncer's (major, minor), e.g. (1, 18) on Debian 12."""

    def command(self) -> str:
        return "pgbouncer --version 2>/dev/null | head -1 || true"

    def process(self, output: list[str]) -> tuple[int, int] | None:
        words = " ".join(output).split()
        for word in words:
            parts = word.split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                return int(parts[0]), int(parts[1])
        return None


def read_passwords(conf: PgbouncerSettings) -> dict[str, str]:
    """Each role's password, read on the controller from the file the inventory names."""
    passwords = {}
    for db in conf.databases:
        path = Path(db.password_file).expanduser()
        try:
            text = path.read_text()
        except OSError:
            fetch = (
                f" (e.g. `gcloud secrets versions access latest --secret={db.password_secret} "
                f"> {path}`)"
                if db.password_secret
                else ""
            )
            raise DeployError(
                f"{host.name}: bulwark.pgbouncer.databases[{db.name}].password_file {path} "
                f"cannot be read: create it (mode 600) with the role's password{fetch}"
            ) from None
        try:
            passwords[db.user] = scram.password_from_file(text)
        except ValueError as exc:
            raise DeployError(f"{host.name}: password_file {path}: {exc}") from None
    return passwords


@operation()
def postgres_roles(conf: PgbouncerSettings, passwords: dict[str, str]):  # type: ignore[no-untyped-def]
    """Create each login role (with the SCRAM verifier of its password) and database, or fix a
    role whose stored verifier no longer matches the password. SQL goes through a root-only
    file, so no verifier appears in a process list.

    + conf: the PgBouncer settings
    + passwords: role -> password (controller side)
    """
    state = host.get_fact(PostgresState)
    roles: dict[str, str] = state["roles"]  # type: ignore[assignment]
    databases: list[str] = state["databases"]  # type: ignore[assignment]
    sql = []
    for user, password in passwords.items():
        if user not in roles:
            sql.append(f"CREATE ROLE {user} LOGIN PASSWORD '{scram.verifier(password)}';")
        elif not scram.matches(password, roles[user]):
            sql.append(f"ALTER ROLE {user} PASSWORD '{scram.verifier(password)}';")
    for db in conf.databases:
        if db.name not in databases:
            sql.append(f"CREATE DATABASE {db.name} OWNER {db.user};")
    if not sql:
        host.noop(f"roles {', '.join(passwords)} and their databases are in place")
        return
    script = f"{STAGE}/postgres-roles.sql"
    yield from put_secret("\n".join(sql) + "\n", script, mode="600")
    yield (
        f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 < {script}; r=$?; "
        f"rm -f {script}; exit $r"
    )


def userlist(passwords: dict[str, str], known: dict[str, str]) -> str:
    """`"user" "verifier"` lines. A known verifier that fits the password is kept (with a local
    Postgres it is the one Postgres stores, so PgBouncer can log in with the client's proof);
    otherwise a fresh one is made."""
    lines = []
    for user, password in passwords.items():
        stored = known.get(user, "")
        verifier = stored if scram.matches(password, stored) else scram.verifier(password)
        lines.append(f'"{user}" "{verifier}"')
    return "\n".join(lines) + "\n"


def check_command(conf: PgbouncerSettings) -> str:
    """Refuse a listen address the host does not have, then start a throwaway PgBouncer on the
    staged config, listening on a Unix socket in a private directory only (no TCP port to clash
    with, no pid file, no log file): a config it rejects makes it exit at once; one it accepts
    keeps it running until the timeout."""
    staged = f"{INI}.bulwark-new"
    # Next to the live config: the postgres user must reach it (bulwark's upload dir is 700).
    probe = f"{INI}.bulwark-check"
    discard = f"rm -f {staged} {USERLIST}.bulwark-new"
    address = conf.listen_address
    edits = " ".join(
        f"-e {shlex.quote(e)}"
        for e in (
            "s/^listen_addr = .*/listen_addr =/",
            "s|^pidfile = .*|pidfile =|",
            "s|^logfile = .*|logfile =|",
            f"s|^auth_file = .*|auth_file = {USERLIST}.bulwark-new|",
        )
    )
    return (
        f"ip -o addr show | grep -qE {shlex.quote(f' inet6? {re.escape(address)}/')} || "
        f"{{ {discard}; echo "
        + shlex.quote(
            f"listen_address {address} is not an address of this host (ip addr): PgBouncer "
            "could not listen there; the running one is unchanged"
        )
        + " >&2; exit 1; }; "
        'dir=$(mktemp -d /run/bulwark-pgbouncer-check.XXXXXX) && chown postgres "$dir" && '
        f'sed {edits} -e "s|^unix_socket_dir = .*|unix_socket_dir = $dir|" {staged} > {probe} '
        f"&& chgrp postgres {probe} && chmod 640 {probe} && "
        f"{{ runuser -u postgres -- timeout 3 pgbouncer -q {probe} >/dev/null 2>&1; r=$?; }}; "
        f'rm -rf {probe} "$dir"; [ "$r" = 124 ] || {{ {discard}; '
        "echo 'pgbouncer rejected the new config; the running one is unchanged' >&2; exit 1; }"
    )


@operation()
def pgbouncer_config(conf: PgbouncerSettings, passwords: dict[str, str]):  # type: ignore[no-untyped-def]
    """Install pgbouncer.ini and userlist.txt when they differ: stage, prove with a throwaway
    PgBouncer, move into place, then reload (restart when the listen address or port moved).

    + conf: the PgBouncer settings
    + passwords: role -> password (controller side)
    """
    version = host.get_fact(PgbouncerVersion)
    if version is None:
        raise OperationError(f"{host.name}: pgbouncer is not installed")
    known: dict[str, str] = (
        host.get_fact(PostgresState)["roles"]  # type: ignore[assignment]
        if conf.local_postgres
        else host.get_fact(UserlistVerifiers)
    )
    ini = ConfigFile(
        INI,
        render(
            "pgbouncer/pgbouncer.ini.j2",
            conf=conf,
            version=f"{version[0]}.{version[1]}",
            prepared_statements_supported=version >= (1, 21),
        ),
        mode="640",
        group="postgres",
    )
    users = ConfigFile(USERLIST, userlist(passwords, known), mode="640", group="postgres")
    states = host.get_fact(FileStates, paths=[INI, USERLIST])
    if states.get(INI) == ini.state and states.get(USERLIST) == users.state:
        host.noop(f"pgbouncer {version[0]}.{version[1]} config is in place")
        return
    yield from files.put._inner(
        src=io.StringIO(ini.content), dest=f"{INI}.bulwark-new", mode=ini.mode,
        user=ini.user, group=ini.group,
    )  # fmt: skip
    yield from put_secret(users.content, f"{USERLIST}.bulwark-new", mode="640", group="postgres")
    yield check_command(conf)
    listen = f"listen_addr = {conf.listen_address}"
    port = f"listen_port = {conf.port}"
    yield (
        f"if grep -qxF {shlex.quote(listen)} {INI} && grep -qxF {shlex.quote(port)} {INI}; "
        "then action=reload; else action=restart; fi; "
        f"mv -f {INI}.bulwark-new {INI} && mv -f {USERLIST}.bulwark-new {USERLIST} && "
        "systemctl enable --quiet pgbouncer && "
        'if systemctl is-active --quiet pgbouncer; then systemctl "$action" pgbouncer; '
        "else systemctl start pgbouncer; fi"
    )


@deploy("PgBouncer")
def pgbouncer(inventory_host: InventoryHost | None = None) -> None:
    conf = (inventory_host or current()).settings.pgbouncer
    if conf is None:
        return
    passwords = read_passwords(conf)
    if conf.local_postgres:
        packages_present(name="Install PostgreSQL (local, lab and dev)", packages=["postgresql"])
        version = host.get_fact(PostgresState)["version"] or _expected_postgres()
        servers = conf.budget.pooler.server_connections
        config_files(
            name="Postgres: localhost only, SCRAM, max_connections from the budget",
            files=[
                ConfigFile(
                    f"/etc/postgresql/{version}/main/conf.d/bulwark.conf",
                    render("postgres/bulwark.conf.j2", conf=conf, servers=servers),
                    then="systemctl restart postgresql",
                )
            ],
        )
        units_running(name="Postgres running", units=["postgresql.service"])
        postgres_roles(name="Postgres roles (SCRAM) and databases", conf=conf, passwords=passwords)
    packages_present(name="Install PgBouncer", packages=["pgbouncer"])
    pgbouncer_config(
        name=f"PgBouncer: transaction pooling on {conf.listen_address}:{conf.port}",
        conf=conf,
        passwords=passwords,
    )
    units_running(name="PgBouncer running", units=["pgbouncer.service"])


def _expected_postgres() -> str:
    """The Postgres major the distro installs, for the very first run (before it exists)."""
    from bulwark.hosts.deploys.updates import distro  # noqa: PLC0415

    return {"bookworm": "15", "trixie": "17", "jammy": "14", "noble": "16"}.get(distro()[1], "15")
