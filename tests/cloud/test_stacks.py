"""All three stacks build under Pulumi mocks, with their outputs present and secrets secret."""

from __future__ import annotations

import json
import re

import pytest

from bulwark.cloud.plan import REDACTED, Plan
from bulwark.cloud.platform import SECRET_OUTPUTS

# Mock values standing in for generated secrets: they must never reach a plan or an output.
MOCK_SECRETS = ("mock-generated-password", "mock-redis-auth-string")
EXPECTED_OUTPUTS = {
    "environment", "network", "database_instance", "database_connection_name",
    "database_private_ip", "database_password_secret", "pooler_mode", "pooler_host",
    "pooler_port", "database_url", "database_url_secret", "driver_settings",
    "connection_budget", "redis_host", "redis_port", "redis_auth_secret", "redis_server_ca",
    "service_url", "service_account", "ci_workload_identity_provider", "ci_service_account",
    "ci_reader_workload_identity_provider", "ci_reader_service_account",
}  # fmt: skip
COMPONENT_TOKEN = re.compile(r"^bulwark:[a-z]+:[A-Z][A-Za-z]+$")


def test_every_stack_exports_every_output_resolved(plan: Plan) -> None:
    expected = set(EXPECTED_OUTPUTS)
    if plan.settings.pooler.mode == "pgbouncer":
        expected.add("pgbouncer_inventory")
    assert set(plan.outputs) == expected, plan.stack
    assert not plan.unknown_outputs, f"{plan.stack}: unresolved outputs {plan.unknown_outputs}"


def test_secret_outputs_are_marked_secret(plan: Plan) -> None:
    for name in SECRET_OUTPUTS:
        assert name in plan.secret_outputs, f"{plan.stack}: output {name} is not secret"
        assert plan.outputs[name] == REDACTED
    # ...and nothing else is: ids of secrets are fine to show, values are not.
    assert plan.secret_outputs == set(SECRET_OUTPUTS)


def test_no_secret_value_appears_anywhere_in_the_plan(plan: Plan) -> None:
    dumped = json.dumps(plan.as_dict())
    for value in MOCK_SECRETS:
        assert value not in dumped, f"{plan.stack}: {value} leaked into the plan"


def test_generated_secrets_reach_resources_only_as_secrets(plan: Plan) -> None:
    for version in plan.of_type("gcp:secretmanager/secretVersion:SecretVersion"):
        assert version.inputs["secretData"] == REDACTED, version.name
    assert plan.one("gcp:sql/user:User").inputs["password"] == REDACTED


def test_pooler_dsn_points_at_the_pooler_port(plan: Plan) -> None:
    assert plan.outputs["pooler_port"] == 6432
    if plan.settings.pooler.mode == "managed":
        assert plan.outputs["pooler_host"] == plan.outputs["database_private_ip"]
    else:
        assert plan.outputs["pooler_host"] != plan.outputs["database_private_ip"]


def test_driver_settings_are_safe_for_transaction_pooling(plan: Plan) -> None:
    # No stack runs PgBouncer >= 1.22 with prepared-statement tracking and libpq >= 17.
    assert plan.outputs["driver_settings"]["prepare_threshold"] is None
    service = plan.one("gcp:cloudrunv2/service:Service")
    envs = {e["name"]: e.get("value") for e in service.get("template.containers.0.envs")}
    assert envs["DB_PREPARE_THRESHOLD"] == "none"


def test_the_budget_output_is_the_one_the_pooler_is_sized_with(plan: Plan) -> None:
    budget = plan.outputs["connection_budget"]
    assert budget["fits"] is True
    assert budget["pooler"]["pool_size"] == plan.settings.pool_size
    assert budget["pooler"]["server_connections"] <= budget["postgres"]["usable"]
    assert budget["clients"]["worst_case"] <= budget["pooler"]["client_capacity"]


def test_components_use_bulwark_type_tokens_and_own_every_resource(plan: Plan) -> None:
    components = [r for r in plan.resources if not r.custom]
    assert {r.type for r in components} >= {
        "bulwark:project:ProjectApis", "bulwark:network:Network",
        "bulwark:database:PostgresDatabase", "bulwark:pooler:TransactionPooler",
        "bulwark:cache:RedisCache", "bulwark:service:CloudRunService",
        "bulwark:ci:GithubDeployer", "bulwark:ci:GithubReader", "bulwark:secrets:StoredSecret",
    }  # fmt: skip
    for component in components:
        assert COMPONENT_TOKEN.match(component.type), component.type
    component_urns = {r.urn for r in components}
    for res in plan.resources:
        if res.custom:
            assert res.parent in component_urns, f"{res.type} {res.name} has no component parent"


def test_every_cloud_resource_waits_for_the_apis(plan: Plan) -> None:
    api_urns = {r.urn for r in plan.of_type("gcp:projects/service:Service")}
    assert len(api_urns) == 10
    for res in plan.resources:
        if res.custom and res.type.startswith("gcp:") and res.urn not in api_urns:
            assert api_urns <= set(res.dependencies), f"{res.name} may race API enablement"


def test_private_ip_resources_wait_for_the_peering(plan: Plan) -> None:
    peering = plan.one("gcp:servicenetworking/connection:Connection").urn
    for token in ("gcp:sql/databaseInstance:DatabaseInstance", "gcp:redis/instance:Instance"):
        assert peering in plan.one(token).dependencies, token


VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
READER = "gcp:secretmanager/secretIamMember:SecretIamMember"


def test_the_service_starts_after_its_secrets_have_a_version(plan: Plan) -> None:
    # Cloud Run resolves `latest` when the revision starts: a secret without a version yet (the
    # DSN's waits for the database and its user) fails the first deploy.
    service = plan.one("gcp:cloudrunv2/service:Service")
    needed = {"pooler-dsn", "cache-auth"}  # DATABASE_URL and REDIS_AUTH
    versions = {plan.one(VERSION, f"{n}-version").urn for n in needed}
    readers = {plan.one(READER, f"{n}-reader-run").urn for n in needed}
    assert versions | readers <= set(service.dependencies)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_plans_are_deterministic(stack: str, plans: dict[str, Plan]) -> None:
    from bulwark.cloud.plan import run_plan  # noqa: PLC0415 - a second, independent run

    from .conftest import STACKS_DIR  # noqa: PLC0415

    again = run_plan(stack, STACKS_DIR)
    assert [r.as_dict() for _, r in again.walk()] == [r.as_dict() for _, r in plans[stack].walk()]
    assert again.outputs == plans[stack].outputs
