"""`bulwark pooler check`: prove which psycopg settings survive this transaction pooler.

The failure it looks for hides at low traffic: psycopg prepares a statement after
`prepare_threshold` executions (5 by default) on whatever server connection the pooler lent it;
the next transaction runs on another server connection, where `_pg3_0` does not exist (or already
exists, from another client). So the check does what load does: many clients at once, each
repeating parametrized queries, on fewer server connections than clients; one client also keeps
a tiny statement cache, so psycopg must deallocate statements too (with libpq < 17 it does that
with a DEALLOCATE the pooler sends to whichever server it lends). It runs the workload with
psycopg's defaults, with prepared statements off, and with the app's settings, counts errors by
kind, counts the server connections the pooler really used (`pg_backend_pid()`), and reads
pg_prepared_statements (the server's own truth) to show what drivers left behind.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import conninfo

from bulwark.errors import ConfigError
from bulwark.pooling.driver import MIN_LIBPQ, MIN_PGBOUNCER, version_tuple

PSYCOPG_DEFAULT = 5
PSYCOPG_PREPARED_MAX = 100
MAX_CLIENTS = 500
Check = Callable[[int, tuple[Any, ...]], bool]
# Each client repeats a few distinct parametrized queries: a driver that prepares them will
# have prepared every one within the first rounds. Every answer is checked: behind a pooler
# that mixes up statement names, a query can silently run ANOTHER client's statement and
# return its rows. The first query also names the server connection lent for the transaction.
QUERIES: tuple[tuple[str, Check], ...] = (
    ("SELECT pg_backend_pid(), %s::int + 1000", lambda v, row: row[1:] == (v + 1000,)),
    ("SELECT %s::text || 'x'", lambda v, row: row == (f"{v}x",)),
    ("SELECT count(*) FROM generate_series(1, %s::int)", lambda v, row: row == (v,)),
)
WRONG_RESULT = (
    "WrongResult: a statement returned rows that are not its own (it ran a statement another "
    "client prepared under the same name)"
)
# The eviction client: more distinct statements than its cache holds, so psycopg deallocates.
EVICTING_CACHE = 2


def _times(k: int) -> Check:
    return lambda v, row: row == (v * k,)


EVICTING_QUERIES = tuple((f"SELECT %s::int * {k}", _times(k)) for k in range(2, 6))


@dataclass(frozen=True)
class Driver:
    """The psycopg connection settings that decide prepared statements."""

    prepare_threshold: int | None = PSYCOPG_DEFAULT
    prepared_max: int = PSYCOPG_PREPARED_MAX

    @property
    def label(self) -> str:
        threshold = f"prepare_threshold={self.prepare_threshold}"
        if self.prepare_threshold is None:
            return threshold
        return threshold + ("" if self.prepared_max == PSYCOPG_PREPARED_MAX else
                            f", prepared_max={self.prepared_max}")  # fmt: skip


DEFAULTS = Driver()
UNPREPARED = Driver(prepare_threshold=None)


@dataclass
class Workload:
    """One run of the concurrent workload with one set of driver settings."""

    driver: Driver
    clients: int
    rounds: int
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # by kind, from queries
    refused: Counter[str] = field(default_factory=Counter)  # clients that could not connect
    server_pids: set[int] = field(default_factory=set)
    seconds: float = 0.0
    server_prepared: int | None = None  # pg_prepared_statements on one lent connection

    @property
    def label(self) -> str:
        return self.driver.label

    @property
    def safe(self) -> bool:
        return not self.errors and not self.refused

    @property
    def switched_servers(self) -> bool:
        """The pooler lent more than one server connection: the failure had its chance."""
        return len(self.server_pids) >= 2

    def as_dict(self) -> dict[str, Any]:
        return {
            "prepare_threshold": self.driver.prepare_threshold,
            "prepared_max": self.driver.prepared_max,
            "clients": self.clients,
            "rounds": self.rounds,
            "ok": self.ok,
            "errors": dict(self.errors),
            "refused": dict(self.refused),
            "server_connections_used": len(self.server_pids),
            "seconds": round(self.seconds, 2),
            "server_prepared_statements": self.server_prepared,
            "safe": self.safe,
        }


@dataclass
class CheckResult:
    target: str  # host:port/dbname as user, never the password
    libpq: tuple[int, int]
    server_version: str
    pgbouncer: str | None  # from SHOW VERSION, when the user may ask the admin console
    tested: Workload
    defaults: Workload
    unprepared: Workload

    @property
    def workloads(self) -> list[Workload]:
        """Each workload that ran, once (the app's settings may be psycopg's defaults)."""
        found: list[Workload] = []
        for run in (self.tested, self.defaults, self.unprepared):
            if all(run is not seen for seen in found):
                found.append(run)
        return found

    @property
    def blockers(self) -> list[str]:
        """What makes prepared statements unsafe whatever this run showed (the known rules)."""
        if self.tested.driver.prepare_threshold is None:
            return []
        found = []
        if self.pgbouncer and version_tuple(self.pgbouncer) < MIN_PGBOUNCER:
            found.append(f"PgBouncer {self.pgbouncer} < {'.'.join(map(str, MIN_PGBOUNCER))}")
        if self.libpq[0] < MIN_LIBPQ:
            found.append(f"libpq {self.libpq[0]} < {MIN_LIBPQ} deallocates with DEALLOCATE")
        return found

    @property
    def safe(self) -> bool:
        if not self.tested.safe or self.blockers:
            return False
        return self.tested.driver.prepare_threshold is None or self.tested.switched_servers

    def verdict(self) -> str:
        tested = self.tested
        if tested.refused:
            kinds = ", ".join(f"{n} x {k}" for k, n in tested.refused.most_common(2))
            return (
                f"INCONCLUSIVE: {sum(tested.refused.values())} of {tested.clients} clients could "
                f"not connect ({kinds}): fix the pooler's client limit or auth first"
            )
        if tested.errors:
            kinds = ", ".join(f"{n} x {k}" for k, n in tested.errors.most_common(3))
            fallback = (
                "prepare_threshold=None survives it"
                if self.unprepared.safe
                else "even prepare_threshold=None fails: check the pooler itself"
            )
            wrong = tested.errors[WRONG_RESULT]
            silent = (
                f"; {wrong} answers were silently WRONG (a statement ran another client's "
                "prepared statement)"
                if wrong
                else ""
            )
            return f"{tested.label} is UNSAFE behind this pooler ({kinds}){silent}; {fallback}"
        if tested.driver.prepare_threshold is None:
            return "prepare_threshold=None is safe here: the app prepares nothing on the server"
        if self.blockers:
            return (
                f"{tested.label} is UNSAFE: {', '.join(self.blockers)} (psycopg prepares "
                "safely behind PgBouncer only from 1.22 on, with libpq >= 17, which closes "
                "statements at protocol level); use prepare_threshold=None"
            )
        if not tested.switched_servers:
            return (
                f"INCONCLUSIVE for {tested.label}: the pooler lent a single server connection, "
                "so no statement ever met another server; run with more --clients than the "
                "pool's default_pool_size"
            )
        return (
            f"{tested.label} is safe here: the pooler kept prepared statements consistent "
            f"across {len(tested.server_pids)} server connections under {tested.clients} "
            f"concurrent clients, deallocation included"
            + ("" if self.pgbouncer else " (PgBouncer's version is not visible to this user)")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "libpq": ".".join(map(str, self.libpq)),
            "server_version": self.server_version,
            "pgbouncer": self.pgbouncer,
            "tested": self.tested.as_dict(),
            "defaults": self.defaults.as_dict(),
            "unprepared": self.unprepared.as_dict(),
            "safe": self.safe,
            "verdict": self.verdict(),
        }


def parse_threshold(text: str) -> int | None:
    """`none` (prepared statements off) or a non-negative integer."""
    if text.strip().lower() in ("none", "off", "null"):
        return None
    if not re.fullmatch(r"[0-9]{1,6}", text.strip()):
        raise ConfigError(
            f"--prepare-threshold {text!r}: give a number (psycopg's default is 5) or 'none'"
        )
    return int(text)


def parse_dsn(dsn: str) -> dict[str, str]:
    """The DSN's parts; errors never repeat the DSN (it may hold a password)."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise ConfigError(
            "DSN: libpq cannot parse it (check the quoting and any %-escapes); it is not "
            "shown here in case it holds a password"
        ) from None
    if not (parts.get("host") or parts.get("hostaddr")):
        raise ConfigError(
            "DSN: no host: name the pooler, e.g. 'host=10.0.0.5 port=6432 dbname=app user=app'"
        )
    if "password" in parts:
        raise ConfigError(
            "DSN: it holds a password: leave it out and set PGPASSWORD or use ~/.pgpass, so "
            "the secret stays out of the process list and shell history"
        )
    if "sslpassword" in parts:
        raise ConfigError(
            "DSN: it holds sslpassword, the client key's passphrase: leave it out and use an "
            "unencrypted key file readable by you alone (sslkey), so the secret stays out of "
            "the process list and shell history"
        )
    return {k: str(v) for k, v in parts.items()}


def _target(parts: dict[str, str]) -> str:
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    return (
        f"{host}:{parts.get('port', '5432')}/{parts.get('dbname', '?')} as {parts.get('user', '?')}"
    )


def _error_kind(exc: psycopg.Error) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # Statement names differ per client: keep the kind, not the name.
    for name in ("_pg3_", "PGBOUNCER_"):
        if name in message:
            message = message.split('"')[0] + '"' + name + 'N"' + message.rsplit('"', 1)[-1]
    return f"{type(exc).__name__}: {message}"


Opened = list[tuple[psycopg.Connection[Any], bool]]  # each connection, and whether it evicts


def _connect(dsn: str, driver: Driver, run: Workload, lock: threading.Lock, conns: Opened,
             evicting: bool) -> None:  # fmt: skip
    try:
        conn = psycopg.connect(
            dsn, autocommit=True, prepare_threshold=driver.prepare_threshold, connect_timeout=30
        )
    except psycopg.Error as exc:
        with lock:
            run.refused[_error_kind(exc)] += 1
        return
    conn.prepared_max = EVICTING_CACHE if evicting else driver.prepared_max
    with lock:
        conns.append((conn, evicting))


def _queries(conn: psycopg.Connection[Any], queries: tuple[tuple[str, Check], ...],
             rounds: int, run: Workload, lock: threading.Lock) -> None:  # fmt: skip
    ok, errors, pids = Counter[str](), Counter[str](), set[int]()
    try:
        _run_queries(conn, queries, rounds, ok, errors, pids)
    except Exception as exc:  # a lost client must show, never pass as a clean one
        errors[f"client crashed: {type(exc).__name__}: {exc}"] += 1
    with lock:
        run.ok += ok["ok"]
        run.errors.update(errors)
        run.server_pids |= pids


def _run_queries(conn: psycopg.Connection[Any], queries: tuple[tuple[str, Check], ...],
                 rounds: int, ok: Counter[str], errors: Counter[str],
                 pids: set[int]) -> None:  # fmt: skip
    with conn:
        for i in range(rounds):
            value = i % 7 + 1
            for query, right in queries:
                try:
                    row = conn.execute(query, (value,)).fetchone()
                except psycopg.Error as exc:
                    errors[_error_kind(exc)] += 1
                    continue
                if row is None or not right(value, tuple(row)):
                    errors[WRONG_RESULT] += 1
                    continue
                ok["ok"] += 1
                if query is QUERIES[0][0]:
                    pids.add(int(row[0]))


def run_workload(dsn: str, driver: Driver, clients: int, rounds: int) -> Workload:
    """`clients` connections, all opened first (a refusal is counted apart, never as a query
    error), then all at once each running QUERIES `rounds` times (autocommit: every statement
    is its own transaction, so the pooler may lend each a different server). With prepared
    statements on, the last client keeps a tiny cache, so statements get deallocated too."""
    run = Workload(driver=driver, clients=clients, rounds=rounds)
    lock = threading.Lock()
    conns: Opened = []
    prepares = driver.prepare_threshold is not None
    openers = [
        threading.Thread(target=_connect, args=(dsn, driver, run, lock, conns, prepares and i == 0))
        for i in range(clients)
    ]
    began = time.monotonic()
    for thread in openers:
        thread.start()
    for thread in openers:
        thread.join()
    workers = [
        threading.Thread(
            target=_queries,
            args=(conn, EVICTING_QUERIES if evicting else QUERIES, rounds, run, lock),
        )
        for conn, evicting in conns
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    run.seconds = time.monotonic() - began
    try:
        run.server_prepared = server_prepared(dsn, driver.prepare_threshold)
    except psycopg.Error as exc:
        run.errors[f"probe: {_error_kind(exc)}"] += 1
    return run


def server_prepared(dsn: str, threshold: int | None) -> int:
    """Inside one transaction (the pooler keeps one server connection for it): repeat a query
    past the threshold, then count what pg_prepared_statements shows on that server connection
    - statements this client prepared, and any that others left behind there."""
    with (
        psycopg.connect(dsn, prepare_threshold=threshold, connect_timeout=30) as conn,
        conn.transaction(),
    ):
        for i in range((threshold or 0) + 2):
            conn.execute("SELECT %s::bigint", (i,)).fetchone()
        row = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
        return int(row[0]) if row else 0


def pgbouncer_version(parts: dict[str, str]) -> str | None:
    """PgBouncer's version from its admin console (simple protocol only), when this user is in
    admin_users or stats_users; None otherwise (or when the pooler is not PgBouncer)."""
    try:
        with psycopg.connect(
            conninfo.make_conninfo(**{**parts, "dbname": "pgbouncer"}), connect_timeout=10
        ) as conn:
            result = conn.pgconn.exec_(b"SHOW VERSION")
            value = result.get_value(0, 0) if result.ntuples else None
    except psycopg.Error:
        return None
    text = value.decode() if value else ""
    return text.removeprefix("PgBouncer ").split()[0] if text.startswith("PgBouncer ") else None


def check(dsn: str, *, driver: Driver = DEFAULTS, clients: int = 20,
          rounds: int = 20) -> CheckResult:  # fmt: skip
    """Run the workload with psycopg's defaults, with prepared statements off and with the
    app's `driver` settings; never raises on query errors (they are the finding), only on bad
    input or when the pooler cannot be reached at all."""
    if not 2 <= clients <= MAX_CLIENTS:
        raise ConfigError(
            f"--clients {clients}: use 2 to {MAX_CLIENTS} (the failure needs concurrency; "
            "more than the pool's server connections shows it best)"
        )
    threshold = driver.prepare_threshold
    if rounds < 1 or (threshold is not None and rounds <= threshold):
        raise ConfigError(
            f"--rounds {rounds}: use more than the prepare threshold ({threshold or 0}), or no "
            "statement is ever prepared and the check proves nothing"
        )
    if driver.prepared_max < 1:
        raise ConfigError(f"--prepared-max {driver.prepared_max}: psycopg needs at least 1")
    parts = parse_dsn(dsn)
    try:
        with psycopg.connect(dsn, connect_timeout=30) as conn:
            server = str(conn.info.parameter_status("server_version") or "?")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"DSN: cannot connect to the pooler at {_target(parts)}: {first}"
        ) from None
    runs: dict[Driver, Workload] = {}
    for wanted in dict.fromkeys((driver, DEFAULTS, UNPREPARED)):
        runs[wanted] = run_workload(dsn, wanted, clients, rounds)
    version = psycopg.pq.version()
    return CheckResult(
        target=_target(parts),
        libpq=(version // 10000, version % 10000),
        server_version=server,
        pgbouncer=pgbouncer_version(parts),
        tested=runs[driver],
        defaults=runs[DEFAULTS],
        unprepared=runs[UNPREPARED],
    )
