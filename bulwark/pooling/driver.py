"""Driver settings that are safe behind a transaction pooler (pure; no Pulumi).

Under transaction pooling a client's next transaction may run on another server connection,
where the statements it prepared do not exist: psycopg's automatic prepares then fail with
`prepared statement "_pg3_0" does not exist` (or DuplicatePreparedStatement), aborted
transactions pile up and the pool starves. psycopg >= 3.2 prepares safely only when PgBouncer
>= 1.22 tracks prepared statements (max_prepared_statements > 0) and libpq >= 17 closes them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DriverSettings:
    """What the app's psycopg connections must use, and why."""

    prepare_threshold: int | None
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"prepare_threshold": self.prepare_threshold, "reason": self.reason}

    @property
    def env_value(self) -> str:
        """DB_PREPARE_THRESHOLD as the app reads it: `none` or a number."""
        return "none" if self.prepare_threshold is None else str(self.prepare_threshold)


PSYCOPG_DEFAULT_PREPARE_THRESHOLD = 5
# From these on, psycopg's prepared statements survive PgBouncer's transaction pooling.
MIN_PGBOUNCER = (1, 22)
MIN_LIBPQ = 17


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def prepare_blockers(
    pgbouncer_version: str | None, max_prepared_statements: int | None, libpq_major: int | None
) -> list[str]:
    """What keeps psycopg's prepared statements from being safe behind PgBouncer in transaction
    mode (empty: nothing). None means unknown, which blocks: safety is never assumed."""
    missing = []
    if pgbouncer_version is None or version_tuple(pgbouncer_version) < MIN_PGBOUNCER:
        missing.append(f"PgBouncer {pgbouncer_version or 'unknown'} < 1.22")
    if max_prepared_statements is None or max_prepared_statements <= 0:
        missing.append(f"max_prepared_statements = {max_prepared_statements or 0}")
    if libpq_major is None or libpq_major < MIN_LIBPQ:
        missing.append(f"libpq {libpq_major or 'unknown'} < {MIN_LIBPQ}")
    return missing


def driver_settings(
    mode: str,
    pgbouncer_version: str | None = None,
    max_prepared_statements: int = 0,
    libpq_major: int | None = None,
) -> DriverSettings:
    """psycopg settings for a pooler: prepared statements off unless every layer supports them.

    + mode: `managed` or `pgbouncer`
    + pgbouncer_version, max_prepared_statements: the PgBouncer the deploy installs
    + libpq_major: libpq in the app's image, None when unknown
    """
    if mode != "pgbouncer":
        return DriverSettings(
            None,
            "managed pooling in transaction mode: server-side prepared statements are not "
            "guaranteed to survive between transactions",
        )
    missing = prepare_blockers(pgbouncer_version, max_prepared_statements, libpq_major)
    if missing:
        return DriverSettings(None, "prepared statements off: " + ", ".join(missing))
    return DriverSettings(
        PSYCOPG_DEFAULT_PREPARE_THRESHOLD,
        f"PgBouncer {pgbouncer_version} tracks prepared statements "
        f"(max_prepared_statements {max_prepared_statements}) and libpq {libpq_major} closes them",
    )
