"""Connection budget arithmetic and the driver settings that are safe behind a pooler."""

from __future__ import annotations

import pytest

from bulwark.pooling.budget import Budget, Clients, Pooler, Postgres, parse_tier, size_pools
from bulwark.pooling.driver import driver_settings


@pytest.mark.parametrize(
    ("tier", "vcpus", "max_connections", "poolers"),
    [
        ("db-f1-micro", 1, 25, 1),
        ("db-g1-small", 1, 50, 1),
        ("db-custom-1-3840", 1, 100, 1),
        ("db-custom-2-7680", 2, 400, 1),
        ("db-custom-4-15360", 4, 500, 1),
        ("db-perf-optimized-N-2", 2, 500, 1),  # 16 GB
        ("db-perf-optimized-N-4", 4, 600, 1),  # 32 GB
        ("db-perf-optimized-N-8", 8, 800, 2),  # 64 GB
        ("db-perf-optimized-N-16", 16, 1000, 4),  # 128 GB
    ],
)
def test_tiers_give_google_default_max_connections_and_pooler_count(
    tier: str, vcpus: int, max_connections: int, poolers: int
) -> None:
    parsed = parse_tier(tier)
    assert parsed is not None
    assert parsed.vcpus == vcpus
    assert parsed.default_max_connections == max_connections
    assert parsed.managed_poolers == poolers


def test_unknown_tier_is_not_guessed() -> None:
    assert parse_tier("db-n1-standard-2") is None


def test_worst_case_counts_rollout_surge_workers_and_pools() -> None:
    clients = Clients(max_instances=10, rollout_surge_percent=50, workers_per_instance=4,
                      pool_per_worker=5)  # fmt: skip
    assert clients.surge_instances == 5
    assert clients.worst_case == 15 * 4 * 5
    assert "300 = (10 instances + 5 rollout surge) x 4 workers x 5" in clients.explain()


def test_a_fitting_budget_has_no_shortfall() -> None:
    budget = Budget(Clients(3, 100, 2, 5), Pooler(1, 200, 1, 60), Postgres(100, 10))
    assert budget.fits
    assert budget.as_dict()["fits"] is True


def test_too_many_clients_names_the_numbers() -> None:
    budget = Budget(Clients(100, 100, 2, 5), Pooler(1, 1000, 1, 50), Postgres(500, 10))
    (shortfall,) = budget.shortfalls
    assert shortfall.side == "clients"
    assert (shortfall.needed, shortfall.available) == (2000, 1000)
    assert "2000 = (100 instances + 100 rollout surge) x 2 workers x 5" in shortfall.detail
    assert not budget.fits


def test_too_many_server_connections_names_the_numbers() -> None:
    budget = Budget(Clients(5, 0, 1, 5), Pooler(2, 100, 1, 300), Postgres(500, 10))
    (shortfall,) = budget.shortfalls
    assert shortfall.side == "servers"
    assert (shortfall.needed, shortfall.available) == (600, 490)
    assert "max_connections 500 - 10 reserved" in shortfall.detail


def test_pool_size_is_the_most_that_fits_postgres() -> None:
    many_clients = Clients(100, 100, 2, 5)  # 2000 clients
    assert size_pools(many_clients, poolers=2, pools=1, postgres=Postgres(800, 10)) == 395


def test_pool_size_never_exceeds_what_the_clients_can_use() -> None:
    few_clients = Clients(3, 100, 2, 5)  # 60 clients
    assert size_pools(few_clients, poolers=1, pools=1, postgres=Postgres(500, 10)) == 60
    assert size_pools(few_clients, poolers=2, pools=1, postgres=Postgres(500, 10)) == 30


def test_pool_size_is_zero_when_nothing_fits() -> None:
    assert size_pools(Clients(1, 0, 1, 1), poolers=4, pools=1, postgres=Postgres(25, 22)) == 0


@pytest.mark.parametrize(
    ("mode", "version", "prepared", "libpq", "threshold"),
    [
        ("managed", None, 0, 17, None),
        ("pgbouncer", "1.18", 0, 17, None),  # Debian 12's PgBouncer: no tracking at all
        ("pgbouncer", "1.21", 200, 17, None),  # tracks, but psycopg needs >= 1.22
        ("pgbouncer", "1.22", 0, 17, None),  # tracking switched off
        ("pgbouncer", "1.24", 200, 16, None),  # libpq < 17 cannot close them
        ("pgbouncer", "1.24", 200, None, None),  # unknown libpq: assume the worst
        ("pgbouncer", "1.24", 200, 17, 5),
    ],
)
def test_prepared_statements_only_when_every_layer_supports_them(
    mode: str, version: str | None, prepared: int, libpq: int | None, threshold: int | None
) -> None:
    settings = driver_settings(mode, version, prepared, libpq)
    assert settings.prepare_threshold == threshold
    assert settings.env_value == ("none" if threshold is None else str(threshold))
    assert settings.reason
