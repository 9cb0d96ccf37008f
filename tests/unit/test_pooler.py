"""PgBouncer deploy and `pooler check` without a host: settings, SCRAM, config, facts."""

from __future__ import annotations

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
from bulwark.pooler import scram
from bulwark.pooler.check import parse_threshold
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


def test_userlist_keeps_a_fitting_verifier_and_replaces_a_stale_one() -> None:
    kept = userlist({"app": "apppw"}, {"app": PG_VERIFIER})
    assert kept == f'"app" "{PG_VERIFIER}"\n'
    replaced = userlist({"app": "newpw"}, {"app": PG_VERIFIER})
    assert PG_VERIFIER not in replaced
    assert scram.matches("newpw", replaced.split('"')[3])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"listen_address": "0.0.0.0"}, "listen_address"),  # noqa: S104 - refused
        ({"listen_address": "8.8.8.8"}, "listen_address"),
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
