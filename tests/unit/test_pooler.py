"""PgBouncer deploy and `pooler check` without a host: settings, SCRAM, config, facts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bulwark.errors import ConfigError
from bulwark.hosts.deploys.firewall import wanted_rules
from bulwark.hosts.deploys.pgbouncer import (
    PgbouncerVersion,
    PostgresState,
    UserlistVerifiers,
    userlist,
)
from bulwark.hosts.templates import render
from bulwark.policy.evaluate import host_sections, read_host_results
from bulwark.pooler.check import (
    DEFAULTS,
    UNPREPARED,
    WRONG_RESULT,
    CheckResult,
    Driver,
    Workload,
    check,
    parse_dsn,
    parse_threshold,
)
from bulwark.pooler.report import as_verify_report
from bulwark.pooling import scram
from bulwark.settings.hosts import FirewallSettings, harden_settings

# A verifier PostgreSQL 15 stored for password "apppw" (CREATE ROLE ... PASSWORD 'apppw').
PG_VERIFIER = (
    "SCRAM-SHA-256$4096:Ijz3TcDKyACEF4Ij9HXAmw==$iaJ4ZbnDtPAQHp2PjIRKNo32nOtAwyjVoi5pCVh7c9U="
    ":BHXCOOSstcZksJimJZMiDMm01hsji8Br8fEwn7XKkWM="
)


def pgbouncer(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "listen_address": "10.0.2.15",
        "client_ranges": ["10.0.2.2/32"],
        "databases": [{"name": "app", "user": "app", "password_file": "/dev/null"}],
    }
    return {"pgbouncer": data | overrides}


def test_scram_verifier_matches_what_postgres_stores() -> None:
    assert scram.matches("apppw", PG_VERIFIER)
    assert not scram.matches("wrong", PG_VERIFIER)
    assert not scram.matches("apppw", "md5abcdef")
    fresh = scram.verifier("apppw")
    assert fresh.startswith("SCRAM-SHA-256$4096:")
    assert scram.matches("apppw", fresh)
    assert fresh != scram.verifier("apppw")  # a new salt each time


@pytest.mark.parametrize(
    ("text", "password"),
    [
        ("apppw\n", "apppw"),
        ("apppw", "apppw"),
        ("apppw\r\n", "apppw"),
        ("a!#$%&*()-_=+[]{}<>:?", None),
    ],
)
def test_a_password_file_holds_the_password_alone(text: str, password: str | None) -> None:
    assert scram.password_from_file(text) == (password or text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("\n", "is empty"),
        ("apppw\nsecond\n", "more than one line"),
        (" apppw\n", "starts or ends with whitespace"),
        ("apppw \n", "starts or ends with whitespace"),
        # SASLprep maps a no-break space to a space (and drops a soft hyphen) before Postgres
        # and libpq hash: a verifier of the raw text would never match what clients prove.
        ("pass\xa0word", "non-ASCII"),
        ("p\xadw", "non-ASCII"),
        ("pass\x01word", "control characters"),
    ],
)
def test_a_password_file_postgres_would_read_differently_is_refused(
    text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        scram.password_from_file(text)


def test_userlist_keeps_a_fitting_verifier_and_replaces_a_stale_one() -> None:
    kept = userlist({"app": "apppw"}, {"app": PG_VERIFIER})
    assert kept == f'"app" "{PG_VERIFIER}"\n'
    replaced = userlist({"app": "newpw"}, {"app": PG_VERIFIER})
    assert PG_VERIFIER not in replaced
    assert scram.matches("newpw", replaced.split('"')[3])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"listen_address": "0.0.0.0"}, "listen_address"),
        ({"listen_address": "8.8.8.8"}, "listen_address"),
        # A zone index is free text to Python's ipaddress: it reached a root shell command.
        ({"listen_address": "fe80::1%x';id>pwned;'"}, "listen_address"),
        ({"client_ranges": ["fe80::%x;id>pwned;/64"]}, "client_ranges"),
        ({"client_ranges": ["0.0.0.0/0"]}, "client_ranges"),
        ({"pool_mode": "session"}, "pool_mode"),
        ({"default_pool_size": 200}, "pgbouncer"),
        ({"max_client_conn": 5}, "pgbouncer"),
    ],
)
def test_bad_pgbouncer_settings_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field) as caught:
        harden_settings(pgbouncer(**overrides), where="db1: bulwark")
    assert "\n" not in str(caught.value)


def _pooler_state(ini_text: str) -> Any:
    """The host as verify reads it: pgbouncer.ini through the snapshot's own filter."""
    from bulwark.verify.state import HostState, snapshot_parts  # noqa: PLC0415

    command = snapshot_parts(["root"])["pgbouncer-ini"].replace("/etc/pgbouncer/pgbouncer.ini", "-")
    seen = subprocess.run(
        ["sh", "-c", command], input=ini_text, capture_output=True, text=True, check=True
    )
    state = HostState(host=None, deploy_user="deploy")
    state.__dict__["raw"] = {"pgbouncer-ini": seen.stdout.splitlines()}
    return state


@pytest.mark.parametrize(
    ("control", "old", "new", "message"),
    [
        ("transaction_mode", "dbname=app\n", "dbname=app pool_mode=session\n",
         r"\[databases\] app: pool_mode=session"),
        ("transaction_mode", "[pgbouncer]\n", "[users]\napp = pool_mode=statement\n[pgbouncer]\n",
         r"\[users\] app: pool_mode=statement"),
        ("transaction_mode", "[pgbouncer]\n", "[pgbouncer]\n%include /etc/pgbouncer/more.ini\n",
         r"includes /etc/pgbouncer/more\.ini"),
        ("budget", "default_pool_size = ", "default_pool_size = 9", r"default_pool_size = 9\d+; "
         r"the budget sizes it \d+"),
        ("budget", "max_client_conn = ", "max_client_conn = 1", r"max_client_conn = 1\d+; the "
         "budget needs"),
        ("budget", "dbname=app\n", "dbname=app pool_size=500\n", r"\[databases\] app: "
         r"\{'pool_size': '500'\}, outside the budget"),
    ],
)  # fmt: skip
def test_verify_reads_the_pooler_as_pgbouncer_does(
    control: str, old: str, new: str, message: str
) -> None:
    from bulwark.verify.suite import test_pooler as pooler_controls  # noqa: PLC0415

    expected = harden_settings(pgbouncer())
    assert expected.pgbouncer is not None
    rendered = render("pgbouncer/pgbouncer.ini.j2", conf=expected.pgbouncer, version="1.18",
                      prepared_statements_supported=False)  # fmt: skip
    run = getattr(pooler_controls, f"test_pooler_{control}")
    run(_pooler_state(rendered), expected)  # what harden writes passes
    assert old in rendered
    with pytest.raises(AssertionError, match=message):
        run(_pooler_state(rendered.replace(old, new, 1)), expected)


def test_client_limit_defaults_to_the_budgets_worst_case() -> None:
    conf = harden_settings(pgbouncer()).pgbouncer
    assert conf is not None
    assert conf.client_limit == conf.clients.worst_case == 200  # (10 + 10) x 2 x 5


def test_pgbouncer_ini_per_version() -> None:
    conf = harden_settings(pgbouncer()).pgbouncer
    old = render("pgbouncer/pgbouncer.ini.j2", conf=conf, version="1.18",
                 prepared_statements_supported=False)  # fmt: skip
    new = render("pgbouncer/pgbouncer.ini.j2", conf=conf, version="1.24",
                 prepared_statements_supported=True)  # fmt: skip
    for text in (old, new):
        assert "pool_mode = transaction" in text
        assert "auth_type = scram-sha-256" in text
        assert "listen_addr = 10.0.2.15" in text
        assert "max_client_conn = 200" in text
    assert "max_prepared_statements" not in old.replace(";; PgBouncer 1.18 cannot", "")
    assert "max_prepared_statements = 200" in new


def test_the_firewall_opens_pgbouncer_to_the_client_ranges_only() -> None:
    rules = wanted_rules(FirewallSettings(), [22], [(6432, ("10.0.2.2/32", "10.8.0.0/24"))])
    assert "allow from 10.0.2.2/32 to any port 6432 proto tcp" in rules
    assert "allow from 10.8.0.0/24 to any port 6432 proto tcp" in rules
    assert not any(r.startswith("allow 6432") for r in rules)


def test_postgres_state_fact() -> None:
    output = [
        "version 15",
        f"role app {PG_VERIFIER}",
        "role postgres ",
        "db postgres",
        "db app",
    ]
    state = PostgresState().process(output)
    assert state["version"] == "15"
    assert state["roles"] == {"app": PG_VERIFIER, "postgres": ""}
    assert state["databases"] == ["postgres", "app"]


def test_pgbouncer_facts() -> None:
    assert PgbouncerVersion().process(["PgBouncer 1.18.0"]) == (1, 18)
    assert PgbouncerVersion().process(["PgBouncer 1.24.1", "libevent 2.1.12"]) == (1, 24)
    assert PgbouncerVersion().process([]) is None
    assert UserlistVerifiers().process([f'"app" "{PG_VERIFIER}"']) == {"app": PG_VERIFIER}


@pytest.mark.parametrize(("text", "value"), [("5", 5), ("0", 0), ("none", None), ("None", None)])
def test_prepare_threshold_option(text: str, value: int | None) -> None:
    assert parse_threshold(text) == value


def test_a_bad_prepare_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="--prepare-threshold"):
        parse_threshold("maybe")


def test_client_ranges_are_written_as_ufw_prints_them() -> None:
    conf = harden_settings(pgbouncer(client_ranges=["10.0.2.2/32", "10.8.0.7/24"])).pgbouncer
    assert conf is not None
    assert conf.client_ranges == ("10.0.2.2", "10.8.0.0/24")


def _run(driver: Driver, *, errors: dict[str, int] | None = None, pids: int = 4,
         refused: dict[str, int] | None = None) -> Workload:  # fmt: skip
    run = Workload(driver=driver, clients=20, rounds=20, ok=1200)
    run.errors.update(errors or {})
    run.refused.update(refused or {})
    run.server_pids = set(range(pids))
    return run


def _result(tested: Workload, *, libpq: int = 17, pgbouncer: str | None = "1.24.1",
            unprepared: Workload | None = None) -> CheckResult:  # fmt: skip
    return CheckResult(
        target="10.0.0.5:6432/app as app", libpq=(libpq, 4), server_version="17.2",
        pgbouncer=pgbouncer, tested=tested, defaults=tested,
        unprepared=unprepared or _run(UNPREPARED),
    )  # fmt: skip


PREPARED_ERROR = {'InvalidSqlStatementName: prepared statement "_pg3_N" does not exist': 40}


@pytest.mark.parametrize(
    ("result", "safe", "says"),
    [
        # PgBouncer 1.18: the defaults fail under load, None survives.
        (_result(_run(DEFAULTS, errors=PREPARED_ERROR), pgbouncer="1.18.0"), False,
         "prepare_threshold=5 is UNSAFE behind this pooler (40 x InvalidSqlStatementName"),
        # PgBouncer 1.24 with tracking, libpq 17: prepared statements are fine.
        (_result(_run(DEFAULTS)), True, "safe here: the pooler kept prepared statements"),
        # No error seen, but libpq 16 deallocates with SQL the pooler misroutes.
        (_result(_run(DEFAULTS), libpq=16), False, "libpq 16 < 17 deallocates with DEALLOCATE"),
        # A 1.21 PgBouncer is below what psycopg supports, whatever this run showed.
        (_result(_run(DEFAULTS), pgbouncer="1.21.0"), False, "PgBouncer 1.21.0 < 1.22"),
        # One server connection: nothing was ever at risk, so nothing is proven.
        (_result(_run(DEFAULTS, pids=1)), False, "INCONCLUSIVE"),
        # Clients refused at connect are not prepared-statement errors.
        (_result(_run(DEFAULTS, refused={"OperationalError: no more connections": 3})), False,
         "3 of 20 clients could not connect"),
        (_result(_run(UNPREPARED)), True, "prepare_threshold=None is safe here"),
        # The worst kind: no error at all for the app, just another client's rows.
        (_result(_run(DEFAULTS, errors={WRONG_RESULT: 3})), False,
         "3 answers were silently WRONG"),
    ],
)  # fmt: skip
def test_the_verdict_weighs_what_ran_and_the_versions(
    result: CheckResult, safe: bool, says: str
) -> None:
    assert result.safe is safe
    assert says in result.verdict()


def test_a_password_in_the_dsn_is_refused_and_a_bad_dsn_never_echoed() -> None:
    with pytest.raises(ConfigError, match="holds a password: leave it out and set PGPASSWORD"):
        parse_dsn("host=10.0.0.5 dbname=app user=app password=hunter2")
    with pytest.raises(ConfigError) as caught:
        parse_dsn("postgresql://app:hun%zzter2@10.0.0.5/app")
    assert "hun" not in str(caught.value)
    assert str(caught.value).startswith("DSN: ")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clients": 1}, "--clients 1: use 2 to 500"),
        ({"clients": 501}, "--clients 501"),
        ({"rounds": 5}, "--rounds 5: use more than the prepare threshold"),
        ({"rounds": 0, "driver": UNPREPARED}, "--rounds 0"),
        ({"driver": Driver(prepared_max=0)}, "--prepared-max 0"),
    ],
)
def test_a_check_that_could_prove_nothing_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        check("host=127.0.0.1 port=1 dbname=app user=app", **kwargs)


def test_the_finding_reads_as_an_audit_section(tmp_path: Path) -> None:
    unsafe = _result(_run(DEFAULTS, errors=PREPARED_ERROR), pgbouncer="1.18.0")
    as_verify_report(unsafe).write(tmp_path / "pooler.json")
    (section,) = host_sections(read_host_results(tmp_path / "pooler.json"))
    statuses = {c.id: c.status for c in section.controls}
    assert statuses == {"pooler-check-driver-settings": "fail", "pooler-check-unprepared": "pass"}
    (failed,) = [c for c in section.controls if c.status == "fail"]
    assert "prepare_threshold" in failed.remediation
    assert "UNSAFE" in failed.evidence[0]
