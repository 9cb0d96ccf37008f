"""`bulwark pooler check`: prove which psycopg settings survive this transaction pooler.

The failure it looks for hides at low traffic: psycopg prepares a statement after
`prepare_threshold` executions (5 by default) on whatever server connection the pooler lent it;
the next transaction runs on another server connection, where `_pg3_0` does not exist (or already
exists, from another client). So the check does what load does: many clients at once, each
repeating parametrized queries, fewer server connections than clients. It runs the workload
with the settings under test and with prepared statements off, counts errors by kind, and reads
pg_prepared_statements (the server's own truth) to show what the driver left behind.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bulwark.errors import ConfigError

PSYCOPG_DEFAULT = 5
# Each client repeats a few distinct parametrized queries: a driver that prepares them will
# have prepared every one within the first rounds.
QUERIES = (
    "SELECT %s::int + 1",
    "SELECT %s::text || 'x'",
    "SELECT count(*) FROM generate_series(1, %s::int)",
)


@dataclass
class Workload:
    """One run of the concurrent workload with one prepare_threshold."""

    prepare_threshold: int | None
    clients: int
    rounds: int
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    server_prepared: int = 0  # statements pg_prepared_statements showed on a lent connection

    @property
    def label(self) -> str:
        return (
            "prepare_threshold=None"
            if self.prepare_threshold is None
            else (f"prepare_threshold={self.prepare_threshold}")
        )

    @property
    def safe(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "prepare_threshold": self.prepare_threshold,
            "clients": self.clients,
            "rounds": self.rounds,
            "ok": self.ok,
            "errors": dict(self.errors),
            "seconds": round(self.seconds, 2),
            "server_prepared_statements": self.server_prepared,
            "safe": self.safe,
        }


@dataclass
class CheckResult:
    libpq: str
    server_version: str
    tested: Workload
    unprepared: Workload

    @property
    def safe(self) -> bool:
        return self.tested.safe

    def verdict(self) -> str:
        if self.tested.safe and self.tested.prepare_threshold is not None:
            return (
                f"{self.tested.label} is safe here: the pooler kept prepared statements "
                f"consistent under {self.tested.clients} concurrent clients"
            )
        if self.tested.safe:
            return "prepare_threshold=None is safe here: the app prepares nothing on the server"
        kinds = ", ".join(f"{n} x {k}" for k, n in self.tested.errors.most_common(3))
        fallback = (
            "prepare_threshold=None survives it"
            if self.unprepared.safe
            else "even prepare_threshold=None fails: check the pooler itself"
        )
        return f"{self.tested.label} is UNSAFE behind this pooler ({kinds}); {fallback}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "libpq": self.libpq,
            "server_version": self.server_version,
            "tested": self.tested.as_dict(),
            "unprepared": self.unprepared.as_dict(),
            "safe": self.safe,
            "verdict": self.verdict(),
        }


def parse_threshold(text: str) -> int | None:
    """`none` (prepared statements off) or a non-negative integer."""
    if text.strip().lower() in ("none", "off", "null"):
        return None
    if not text.strip().isdigit():
        raise ConfigError(
            f"--prepare-threshold {text!r}: give a number (psycopg's default is 5) or 'none'"
        )
    return int(text)


def _error_kind(exc: psycopg.Error) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # Statement names differ per client: keep the kind, not the name.
    for name in ("_pg3_", "PGBOUNCER_"):
        if name in message:
            message = message.split('"')[0] + '"' + name + 'N"' + message.rsplit('"', 1)[-1]
    return f"{type(exc).__name__}: {message}"


def _client(dsn: str, threshold: int | None, rounds: int, run: Workload, lock: threading.Lock,
            start: threading.Barrier) -> None:  # fmt: skip
    ok, errors = 0, Counter[str]()
    try:
        conn = psycopg.connect(
            dsn, autocommit=True, prepare_threshold=threshold, connect_timeout=20
        )
    except psycopg.Error as exc:
        with lock:
            run.errors[f"connect: {_error_kind(exc)}"] += 1
        start.abort()
        return
    with conn:
        try:
            start.wait(timeout=60)
        except threading.BrokenBarrierError:
            return
        for i in range(rounds):
            for query in QUERIES:
                try:
                    conn.execute(query, (i % 7 + 1,)).fetchone()
                    ok += 1
                except psycopg.Error as exc:
                    errors[_error_kind(exc)] += 1
    with lock:
        run.ok += ok
        run.errors.update(errors)


def run_workload(dsn: str, threshold: int | None, clients: int, rounds: int) -> Workload:
    """`clients` connections at once, each running QUERIES `rounds` times (autocommit: every
    statement is its own transaction, so the pooler may lend each a different server)."""
    run = Workload(prepare_threshold=threshold, clients=clients, rounds=rounds)
    lock = threading.Lock()
    start = threading.Barrier(clients)
    threads = [
        threading.Thread(target=_client, args=(dsn, threshold, rounds, run, lock, start))
        for _ in range(clients)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = time.monotonic() - began
    try:
        run.server_prepared = server_prepared(dsn, threshold)
    except psycopg.Error as exc:
        run.errors[f"probe: {_error_kind(exc)}"] += 1
    return run


def server_prepared(dsn: str, threshold: int | None) -> int:
    """Inside one transaction (the pooler keeps one server connection for it): repeat a query
    past the threshold, then count what pg_prepared_statements shows on that server connection
    - statements this client prepared, and any that others left behind there."""
    with (
        psycopg.connect(dsn, prepare_threshold=threshold, connect_timeout=20) as conn,
        conn.transaction(),
    ):
        for i in range((threshold or 0) + 2):
            conn.execute("SELECT %s::bigint", (i,)).fetchone()
        row = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
        return int(row[0]) if row else 0


def check(dsn: str, *, threshold: int | None = PSYCOPG_DEFAULT, clients: int = 20,
          rounds: int = 20) -> CheckResult:  # fmt: skip
    """Run the workload with `threshold` and with prepared statements off; never raises on
    query errors (they are the finding), only when the pooler cannot be reached at all."""
    if clients < 2:
        raise ConfigError("--clients must be at least 2: the failure needs concurrency")
    try:
        with psycopg.connect(dsn, connect_timeout=20) as conn:
            server = str(conn.info.parameter_status("server_version") or "?")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot connect to the pooler: {first}") from None
    tested = run_workload(dsn, threshold, clients, rounds)
    unprepared = tested if threshold is None else run_workload(dsn, None, clients, rounds)
    libpq = str(psycopg.pq.version())
    libpq_text = f"{int(libpq) // 10000}.{int(libpq) % 10000}"
    return CheckResult(
        libpq=libpq_text, server_version=server, tested=tested, unprepared=unprepared
    )
