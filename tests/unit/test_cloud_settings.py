"""Stack config: defaults, prod requirements, and one-line errors that name the field and fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bulwark.errors import ConfigError
from bulwark.settings.cloud import (
    CloudSettings,
    cloud_settings,
    read_stack_config,
    settings_data,
    stack_file,
)
from bulwark.settings.docs import cloud_settings_table

STACKS = Path(__file__).resolve().parents[2] / "stacks"
DIGEST = "sha256:" + "ab" * 32
MINIMAL: dict[str, Any] = {
    "project": "acme-bulwark-test",
    "region": "europe-west1",
    "environment": "prod",
    "service": {"image": f"europe-west1-docker.pkg.dev/acme/app/api@{DIGEST}"},
    "ci": {"github_repository": "acme/platform"},
}


def settings(**overrides: Any) -> CloudSettings:
    data = copy.deepcopy(MINIMAL)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return cloud_settings(data, "test.yaml")


def error(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        settings(**overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_are_the_production_choice() -> None:
    s = settings()
    assert s.database.availability == "REGIONAL"
    assert s.database.edition == "ENTERPRISE_PLUS"
    assert s.database.deletion_protection
    assert s.cache.tier == "STANDARD_HA"
    assert s.pooler.mode == "managed"
    assert s.service.ingress == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert s.service.invokers == ()
    assert s.budget.fits


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_three_stack_files_are_valid(stack: str) -> None:
    path = stack_file(stack, STACKS)
    s = cloud_settings(settings_data(read_stack_config(path), str(path)), str(path))
    assert s.environment == stack
    assert s.budget.fits


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"pooler": {"mode": "pgbouncr"}},
            "test.yaml: bulwark:pooler.mode: use 'managed' or 'pgbouncer'",
        ),
        (
            {"service": {"max_instances": 0}},
            "test.yaml: bulwark:service.max_instances: 0 would stop the service: set 1 or more",
        ),
        (
            {"service": {"image": "europe-west1-docker.pkg.dev/acme/app/api:latest"}},
            "test.yaml: bulwark:service.image: 'europe-west1-docker.pkg.dev/acme/app/api:latest' "
            "is not pinned by digest: use REGISTRY/REPO@sha256:<64 hex>",
        ),
        (
            {
                "service": {
                    "image": "europe-west1-docker.pkg.dev/acme/app/api:v1",
                    "allow_mutable_image": True,
                }
            },
            "test.yaml: bulwark:service.allow_mutable_image: prod runs images pinned by digest "
            "only: remove it",
        ),
        (
            {"service": {"max_instances": 101}, "network": {"subnet_cidr": "10.8.0.0/22"}},
            "test.yaml: bulwark:pooler.max_client_connections: worst case 2020 = (101 instances "
            "+ 101 rollout surge) x 2 workers x 5 per-process pool client connections exceed the "
            "pooler's 2000 (1 pooler(s) x 2000): raise pooler.max_client_connections",
        ),
        (
            {"pooler": {"pool_size": 600}},
            "test.yaml: bulwark:pooler.pool_size: pooler server connections 600 = 1 pooler(s) x "
            "1 pool(s) x 600 server connections exceed Postgres' 490 usable (max_connections 500 "
            "- 10 reserved): lower pooler.pool_size",
        ),
        (
            {"database": {"availability": "ZONAL"}},
            "test.yaml: bulwark:database.availability: prod needs REGIONAL",
        ),
        ({"cache": {"tier": "BASIC"}}, "test.yaml: bulwark:cache.tier: prod needs STANDARD_HA"),
        (
            {"cache": {"deletion_protection": False}},
            "test.yaml: bulwark:cache.deletion_protection: prod keeps it on",
        ),
        (
            {"database": {"deletion_protection": False}},
            "test.yaml: bulwark:database.deletion_protection: prod keeps it on",
        ),
        (
            {"database": {"edition": "ENTERPRISE"}},
            "test.yaml: bulwark:database.tier: db-perf-optimized-N-2 needs database.edition: "
            "ENTERPRISE_PLUS",
        ),
        (
            {"database": {"edition": "ENTERPRISE", "tier": "db-custom-2-7680"}},
            "test.yaml: bulwark:pooler.mode: managed connection pooling needs database.edition: "
            "ENTERPRISE_PLUS; set it, or use pooler.mode: pgbouncer",
        ),
        (
            {
                "database": {
                    "edition": "ENTERPRISE",
                    "tier": "db-custom-2-7680",
                    "log_retention_days": 14,
                },
                "pooler": {"mode": "pgbouncer"},
            },
            "test.yaml: bulwark:database.log_retention_days: 14 exceeds Enterprise edition's 7",
        ),
        (
            {"database": {"tier": "db-n1-standard-2"}},
            "test.yaml: bulwark:database.tier: 'db-n1-standard-2' is not a tier bulwark can size",
        ),
        (
            {"service": {"invokers": ["allUsers"]}},
            "test.yaml: bulwark:service.invokers: allUsers makes the service public",
        ),
        (
            {"service": {"env": {"STRIPE_API_KEY": "x"}}},
            "test.yaml: bulwark:service.env: STRIPE_API_KEY looks like a secret",
        ),
        (
            {"service": {"env": {"JWT_SIGNING": "q8Vz3LmN0pR7sT2uW5xY9aB4cD6eF1gH"}}},
            "test.yaml: bulwark:service.env: JWT_SIGNING looks like a secret (its value looks "
            "like a long random string",
        ),
        (
            {"network": {"subnet_cidr": "10.8.0.0/27"}},
            "test.yaml: bulwark:network.subnet_cidr: 10.8.0.0/27 has 28 usable addresses",
        ),
        (
            {"network": {"subnet_cidr": "8.8.8.0/24"}},
            "test.yaml: bulwark:network.subnet_cidr: 8.8.8.0/24 is not a private range",
        ),
        ({"ci": {"branch": "main", "github_repository": "acme"}}, "bulwark:ci.github_repository"),
        ({"service": {"replicas": 3}}, "bulwark:service.replicas: unknown setting"),
        ({"project": None}, "test.yaml: gcp:project: "),
        ({"environment": "qa"}, "test.yaml: bulwark:environment: use 'dev', 'staging' or 'prod'"),
    ],
)
def test_invalid_config_fails_on_one_line_naming_field_and_fix(
    overrides: dict[str, Any], expected: str
) -> None:
    assert expected in error(**overrides)


def test_missing_area_is_named() -> None:
    data = copy.deepcopy(MINIMAL)
    del data["ci"]
    with pytest.raises(ConfigError, match=r"^s\.yaml: bulwark:ci: missing: set it in the stack"):
        cloud_settings(data, "s.yaml")


def test_dev_may_opt_down_explicitly() -> None:
    s = settings(
        environment="dev",
        database={"availability": "ZONAL", "edition": "ENTERPRISE", "tier": "db-custom-1-3840"},
        pooler={"mode": "pgbouncer", "max_client_connections": 200},
        cache={"tier": "BASIC"},
        service={"max_instances": 3},
    )
    assert s.poolers == 1
    assert s.pool_size == 60  # min(90 usable, 60 worst-case clients)


def test_public_invoker_needs_the_named_opt_out() -> None:
    s = settings(service={"invokers": ["allUsers"], "allow_public_invoker": True})
    assert s.service.invokers == ("allUsers",)


def test_managed_poolers_follow_vcpus() -> None:
    s = settings(database={"tier": "db-perf-optimized-N-8"}, service={"max_instances": 40},
                 pooler={"max_client_connections": 2000})  # fmt: skip
    assert s.poolers == 2
    assert s.pool_size == 395
    assert s.budget.pooler.server_connections <= s.budget.postgres.usable


def test_stack_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such stack file"):
        read_stack_config(tmp_path / "Pulumi.nope.yaml")
    secret = tmp_path / "Pulumi.s.yaml"
    secret.write_text(yaml.safe_dump({"config": {"bulwark:token": {"secure": "v1:abc"}}}))
    with pytest.raises(ConfigError, match="bulwark:token: encrypted config is not used"):
        read_stack_config(secret)
    empty = tmp_path / "Pulumi.e.yaml"
    empty.write_text("encryptionsalt: x\n")
    with pytest.raises(ConfigError, match="no `config:` map"):
        read_stack_config(empty)


def test_stacks_readme_table_is_generated_from_the_declarations() -> None:
    readme = (STACKS / "README.md").read_text()
    assert cloud_settings_table() in readme, "stale: paste `bulwark settings --cloud` output"
