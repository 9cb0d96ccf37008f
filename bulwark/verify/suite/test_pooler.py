"""The transaction pooler, where one is declared: PgBouncer's effective mode, listening address,
auth method and firewall, and a local Postgres that stays on loopback."""

from __future__ import annotations

import re

from bulwark.settings.hosts import HardenSettings
from bulwark.settings.pooler import PgbouncerSettings
from bulwark.verify.controls import control, not_applicable
from bulwark.verify.state import HostState


def pooler(expected: HardenSettings) -> PgbouncerSettings:
    if expected.pgbouncer is None:
        not_applicable("no PgBouncer is declared for this host")
    assert expected.pgbouncer is not None
    return expected.pgbouncer


def sections(state: HostState) -> dict[str, list[tuple[str, str]]]:
    """pgbouncer.ini as PgBouncer reads it: section -> its (key, value) lines, in order; an
    `%include` line is kept under its section as ("%include", file)."""
    found: dict[str, list[tuple[str, str]]] = {}
    section = ""
    for line in state.lines("pgbouncer-ini"):
        text = line.strip()
        if text.startswith("[") and text.endswith("]"):
            section = text[1:-1].strip().lower()
        elif text.startswith("%include"):
            found.setdefault(section, []).append(("%include", text.removeprefix("%include")))
        else:
            key, sep, value = text.partition("=")
            if sep:
                found.setdefault(section, []).append((key.strip(), value.strip()))
    return found


def ini(state: HostState) -> dict[str, str]:
    """The [pgbouncer] section's settings (the last value of a key wins, as in PgBouncer)."""
    return dict(sections(state).get("pgbouncer", []))


def own_settings(state: HostState) -> list[tuple[str, str, dict[str, str]]]:
    """Each [databases] and [users] entry with the settings of its own, which win over the
    [pgbouncer] section's: ("databases", "app", {"host": ..., "pool_mode": "session"})."""
    return [
        (section, name, dict(w.partition("=")[::2] for w in value.split() if "=" in w))
        for section in ("databases", "users")
        for name, value in sections(state).get(section, [])
    ]


def listeners(state: HostState, process: str) -> list[str]:
    return [
        line.split()[4]
        for line in state.lines("listen")
        if line.startswith("tcp") and f'"{process}"' in line and len(line.split()) > 4
    ]


@control(
    "pooler-service",
    "PgBouncer runs and starts at boot",
    rationale="A pooler that is down takes every app connection with it.",
)
def test_pooler_service(state: HostState, expected: HardenSettings) -> None:
    pooler(expected)
    enabled, active = state.unit("pgbouncer")
    assert (enabled, active) == ("enabled", "active"), f"pgbouncer.service is {enabled}/{active}"


@control(
    "pooler-transaction-mode",
    "PgBouncer pools in transaction mode",
    rationale="Session pooling holds a server connection per client: the pool starves at scale.",
)
def test_pooler_transaction_mode(state: HostState, expected: HardenSettings) -> None:
    pooler(expected)
    mode = ini(state).get("pool_mode", "session (default)")
    assert mode == "transaction", f"pgbouncer.ini pool_mode = {mode}"
    # An included file is config verify cannot see.
    for section, entries in sections(state).items():
        for name, value in entries:
            assert name != "%include", f"pgbouncer.ini [{section}] includes{value}: inline it"
    for section, name, own in own_settings(state):
        mode = own.get("pool_mode", "transaction")
        assert mode == "transaction", f"pgbouncer.ini [{section}] {name}: pool_mode={mode}"


@control(
    "pooler-budget",
    "PgBouncer's pool and client limit are the connection budget's",
    rationale="A pool larger than the budget exhausts Postgres' connections under load; a "
    "client limit below the app's worst case refuses its connections.",
)
def test_pooler_budget(state: HostState, expected: HardenSettings) -> None:
    conf = pooler(expected)
    found = ini(state)
    pool = found.get("default_pool_size", "20 (default)")
    assert pool == str(conf.pool_size), (
        f"pgbouncer.ini default_pool_size = {pool}; the budget sizes it {conf.pool_size} "
        f"({len(conf.databases)} pool(s) within max_connections {conf.server_max_connections} "
        f"- {conf.reserved_connections} reserved)"
    )
    clients = found.get("max_client_conn", "100 (default)")
    assert clients == str(conf.client_limit), (
        f"pgbouncer.ini max_client_conn = {clients}; the budget needs {conf.client_limit} "
        f"({conf.clients.explain()})"
    )
    for section, name, own in own_settings(state):
        sizes = {k: v for k, v in own.items() if k.endswith("pool_size")}
        assert not sizes, f"pgbouncer.ini [{section}] {name}: {sizes}, outside the budget"


@control(
    "pooler-listen-private",
    "PgBouncer listens on the declared private address only",
    rationale="A pooler on a public interface is a database on the internet.",
)
def test_pooler_listen_private(state: HostState, expected: HardenSettings) -> None:
    conf = pooler(expected)
    found = sorted(listeners(state, "pgbouncer"))
    wanted = f"{conf.listen_address}:{conf.port}"
    assert found == [wanted], f"pgbouncer listens on {found or 'nothing'} (want {wanted})"


@control(
    "pooler-auth-scram",
    "PgBouncer authenticates clients with SCRAM-SHA-256 and stores no plaintext password",
    rationale="md5 and plain auth let a captured hash or file log in anywhere.",
)
def test_pooler_auth_scram(state: HostState, expected: HardenSettings) -> None:
    pooler(expected)
    auth = ini(state).get("auth_type", "?")
    assert auth == "scram-sha-256", f"pgbouncer.ini auth_type = {auth}"
    # The snapshot carries each user's name and the kind of its secret only.
    entries = [line.split() for line in state.lines("pgbouncer-users") if line.strip()]
    weak = [f"{e[0]} ({e[1]})" for e in entries if len(e) < 2 or e[1] != "scram"]
    assert entries, "userlist.txt holds no users"
    assert not weak, f"userlist.txt holds non-SCRAM secrets for {', '.join(weak)}"


@control(
    "pooler-firewall",
    "UFW lets only the declared client ranges reach PgBouncer",
    rationale="The pooler port open to anyone undoes the private address.",
)
def test_pooler_firewall(state: HostState, expected: HardenSettings) -> None:
    conf = pooler(expected)
    to = f"{conf.port}/tcp"
    sources = sorted(r.source for r in state.ufw.rules if r.to == to and not r.v6)
    assert sources == sorted(conf.client_ranges), (
        f"ufw lets {sources or 'nobody'} reach {to} (want {sorted(conf.client_ranges)})"
    )


@control(
    "pooler-postgres-local",
    "The local Postgres behind PgBouncer listens on loopback only",
    rationale="Apps go through the pooler; a directly reachable Postgres bypasses its limits.",
)
def test_pooler_postgres_local(state: HostState, expected: HardenSettings) -> None:
    conf = pooler(expected)
    if not conf.local_postgres:
        not_applicable("Postgres is not on this host")
    found = listeners(state, "postgres")
    outside = [a for a in found if not re.match(r"^(127\.|\[::1\]|::1)", a)]
    assert found, "no postgres listener found"
    assert not outside, f"postgres listens on {outside}"
