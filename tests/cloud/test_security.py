"""The security properties of every component, read from the resources each stack declares."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest

from bulwark.cloud.ci import DEPLOYER_ROLES, READER_ROLES
from bulwark.cloud.database import CIS_FLAGS
from bulwark.cloud.plan import Plan, PlannedResource
from bulwark.cloud.pooler import IAP_RANGE
from bulwark.cloud.project import REQUIRED_APIS
from bulwark.policy.rules.iam import READ_ONLY_ROLE, conjuncts
from bulwark.settings.pooler import PgbouncerSettings

SQL = "gcp:sql/databaseInstance:DatabaseInstance"
REDIS = "gcp:redis/instance:Instance"
RUN = "gcp:cloudrunv2/service:Service"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}


def flags(instance: PlannedResource) -> dict[str, str]:
    return {f["name"]: f["value"] for f in instance.get("settings.databaseFlags")}


# ----------------------------------------------------------------------------- project, network


def test_the_program_enables_the_apis_it_needs(plan: Plan) -> None:
    enabled = {r.inputs["service"] for r in plan.of_type("gcp:projects/service:Service")}
    assert enabled == set(REQUIRED_APIS)
    for api in plan.of_type("gcp:projects/service:Service"):
        assert api.inputs["disableOnDestroy"] is False


def test_network_is_custom_mode_with_private_services_access(plan: Plan) -> None:
    assert plan.one("gcp:compute/network:Network").inputs["autoCreateSubnetworks"] is False
    address = plan.one("gcp:compute/globalAddress:GlobalAddress")
    assert address.inputs["purpose"] == "VPC_PEERING"
    assert address.inputs["addressType"] == "INTERNAL"
    peering = plan.one("gcp:servicenetworking/connection:Connection")
    assert peering.inputs["service"] == "servicenetworking.googleapis.com"
    assert peering.inputs["reservedPeeringRanges"] == [address.inputs["name"]]
    run_subnet = plan.one("gcp:compute/subnetwork:Subnetwork", "network-run")
    assert run_subnet.inputs["privateIpGoogleAccess"] is True
    assert run_subnet.get("logConfig.metadata") == "INCLUDE_ALL_METADATA"


def test_no_firewall_rule_is_open_to_the_internet(plan: Plan) -> None:
    for rule in plan.of_type("gcp:compute/firewall:Firewall"):
        for source in rule.inputs.get("sourceRanges", []):
            assert source != "0.0.0.0/0", rule.name
            assert ipaddress.ip_network(source).is_private or source == IAP_RANGE, rule.name


# ----------------------------------------------------------------------------- database


def test_cloud_sql_has_no_public_ip_and_requires_tls(plan: Plan) -> None:
    sql = plan.one(SQL)
    assert sql.get("settings.ipConfiguration.ipv4Enabled") is False
    assert sql.get("settings.ipConfiguration.sslMode") == "ENCRYPTED_ONLY"
    assert sql.get("settings.ipConfiguration.privateNetwork").endswith("-vpc")
    assert not sql.get("settings.ipConfiguration.authorizedNetworks")


def test_cloud_sql_deletion_protection_is_on_in_both_layers(plan: Plan) -> None:
    sql = plan.one(SQL)
    assert sql.inputs["deletionProtection"] is True  # Pulumi
    assert sql.get("settings.deletionProtectionEnabled") is True  # GCP


def test_cloud_sql_backups_pitr_maintenance_and_insights(plan: Plan) -> None:
    sql = plan.one(SQL)
    assert sql.get("settings.backupConfiguration.enabled") is True
    assert sql.get("settings.backupConfiguration.pointInTimeRecoveryEnabled") is True
    assert sql.get("settings.backupConfiguration.backupRetentionSettings.retainedBackups") >= 7
    assert sql.get("settings.maintenanceWindow.day") in range(1, 8)
    assert sql.get("settings.maintenanceWindow.hour") in range(24)
    assert sql.get("settings.insightsConfig.queryInsightsEnabled") is True


def test_cloud_sql_sets_the_cis_logging_flags(plan: Plan) -> None:
    assert flags(plan.one(SQL)).items() >= dict(CIS_FLAGS).items()
    assert flags(plan.one(SQL))["log_min_duration_statement"] == "-1"
    assert flags(plan.one(SQL))["cloudsql.enable_pgaudit"] == "on"


def test_prod_database_is_regional(plans: dict[str, Plan]) -> None:
    assert plans["prod"].one(SQL).get("settings.availabilityType") == "REGIONAL"
    assert plans["dev"].one(SQL).get("settings.availabilityType") == "ZONAL"  # explicit opt-down


def test_app_password_is_generated_and_kept_in_secret_manager(plan: Plan) -> None:
    password = plan.one("random:index/randomPassword:RandomPassword")
    assert password.inputs["length"] >= 32
    secret = plan.one("gcp:secretmanager/secret:Secret", "database-password-secret-secret")
    assert secret.inputs["secretId"].endswith("-db-password")
    assert secret.get("replication.auto") == {}
    user = plan.one("gcp:sql/user:User")
    assert user.inputs["name"] == plan.settings.database.user_name
    assert plan.one("gcp:sql/database:Database").inputs["name"] == "app"


# ----------------------------------------------------------------------------- pooler


def test_managed_pooler_runs_in_transaction_mode_sized_by_the_budget(
    plans: dict[str, Plan],
) -> None:
    for stack in ("staging", "prod"):
        plan = plans[stack]
        sql = plan.one(SQL)
        assert sql.get("settings.edition") == "ENTERPRISE_PLUS"
        (config,) = sql.get("settings.connectionPoolConfigs")
        assert config["connectionPoolingEnabled"] is True
        pool_flags = {f["name"]: f["value"] for f in config["flags"]}
        assert pool_flags["pool_mode"] == "transaction"
        assert pool_flags["max_pool_size"] == str(plan.settings.pool_size)
        assert pool_flags["max_client_connections"] == str(
            plan.settings.pooler.max_client_connections
        )
        assert not plan.of_type("gcp:compute/instance:Instance")


def test_pgbouncer_vm_is_private_and_reachable_only_from_cloud_run(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    assert plan.settings.pooler.mode == "pgbouncer"
    assert not plan.one(SQL).get("settings.connectionPoolConfigs")
    vm = plan.one("gcp:compute/instance:Instance")
    (nic,) = vm.inputs["networkInterfaces"]
    assert not nic.get("accessConfigs"), "the PgBouncer VM must have no external IP"
    assert vm.get("shieldedInstanceConfig.enableSecureBoot") is True
    assert vm.get("metadata.enable-oslogin") == "TRUE"
    assert vm.get("metadata.block-project-ssh-keys") == "TRUE"
    clients = plan.one("gcp:compute/firewall:Firewall", "pooler-allow-clients")
    assert clients.inputs["allows"] == [{"protocol": "tcp", "ports": ["6432"]}]
    assert clients.inputs["sourceRanges"] == [plan.settings.network.subnet_cidr]
    assert clients.inputs["targetTags"] == vm.inputs["tags"]
    ssh = plan.one("gcp:compute/firewall:Firewall", "pooler-allow-iap-ssh")
    assert ssh.inputs["sourceRanges"] == [IAP_RANGE]
    nat = plan.one("gcp:compute/routerNat:RouterNat")
    assert nat.inputs["sourceSubnetworkIpRangesToNat"] == "LIST_OF_SUBNETWORKS"


def test_pgbouncer_stack_exports_what_a_pyinfra_inventory_needs(plans: dict[str, Plan]) -> None:
    inventory = plans["dev"].outputs["pgbouncer_inventory"]
    assert inventory["host"] == "bulwark-dev-pgbouncer"
    assert inventory["ssh_hostname"] == plans["dev"].outputs["pooler_host"]
    assert inventory["ssh_via"] == "iap"
    # Exactly what `bulwark harden` validates as the host's `bulwark.pgbouncer` settings.
    bouncer = PgbouncerSettings.model_validate(inventory["bulwark"]["pgbouncer"])
    assert bouncer.pool_mode == "transaction"
    assert bouncer.port == 6432
    assert bouncer.listen_address == inventory["ssh_hostname"]
    assert bouncer.pool_size == plans["dev"].settings.pool_size
    assert bouncer.client_limit == 200
    assert bouncer.budget.fits
    assert bouncer.server_tls_sslmode == "require"
    (db,) = bouncer.databases
    assert db.password_secret == "bulwark-dev-db-password"
    # Where the password is, never the password: no key of the inventory holds a secret value.
    assert not re.search(r'"password"\s*:', json.dumps(inventory))


def test_pgbouncer_vm_reads_only_the_database_password(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    vm_email = plan.one("gcp:compute/instance:Instance").get("serviceAccount.email")
    readers = [
        r for r in plan.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
        if r.inputs["member"] == f"serviceAccount:{vm_email}"
    ]  # fmt: skip
    assert [r.inputs["secretId"] for r in readers] == ["bulwark-dev-db-password"]
    vm_roles = {
        r.inputs["role"] for r in plan.of_type(PROJECT_IAM)
        if r.inputs["member"] == f"serviceAccount:{vm_email}"
    }  # fmt: skip
    assert vm_roles == {"roles/logging.logWriter", "roles/monitoring.metricWriter"}


# ----------------------------------------------------------------------------- cache


def test_redis_has_auth_tls_and_private_service_access(plan: Plan) -> None:
    redis = plan.one(REDIS)
    assert redis.inputs["authEnabled"] is True
    assert redis.inputs["transitEncryptionMode"] == "SERVER_AUTHENTICATION"
    assert redis.inputs["connectMode"] == "PRIVATE_SERVICE_ACCESS"
    assert redis.inputs["authorizedNetwork"].endswith("-vpc")
    auth = plan.one("gcp:secretmanager/secret:Secret", "cache-auth-secret")
    assert auth.inputs["secretId"].endswith("-redis-auth")


def test_prod_redis_is_standard_ha(plans: dict[str, Plan]) -> None:
    assert plans["prod"].one(REDIS).inputs["tier"] == "STANDARD_HA"
    assert plans["prod"].one(REDIS).inputs["deletionProtection"] is True


# ----------------------------------------------------------------------------- service


def test_cloud_run_image_is_pinned_by_digest(plan: Plan) -> None:
    image = plan.one(RUN).get("template.containers.0.image")
    assert "@sha256:" in image
    assert len(image.split("@sha256:")[1]) == 64


def test_cloud_run_is_not_public_by_default(plans: dict[str, Plan]) -> None:
    # dev leaves ingress at its default; staging and prod choose the internal load balancer.
    assert plans["dev"].one(RUN).inputs["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    for plan in plans.values():
        assert plan.one(RUN).inputs["ingress"] != "INGRESS_TRAFFIC_ALL"
        for binding in plan.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember"):
            assert binding.inputs["member"] not in {"allUsers", "allAuthenticatedUsers"}
            assert binding.inputs["role"] == "roles/run.invoker"
        assert plan.one(RUN).inputs["invokerIamDisabled"] is False


def test_cloud_run_bounded_scaling_probes_and_private_egress(plan: Plan) -> None:
    run = plan.one(RUN)
    assert run.get("template.scaling.maxInstanceCount") == plan.settings.service.max_instances
    assert 1 <= run.get("template.maxInstanceRequestConcurrency") <= 1000
    assert run.get("template.containers.0.startupProbe.httpGet.path")
    assert run.get("template.containers.0.livenessProbe.httpGet.path")
    assert run.get("template.vpcAccess.egress") == "PRIVATE_RANGES_ONLY"
    assert run.get("template.vpcAccess.networkInterfaces.0.subnetwork").endswith("-run")
    assert run.inputs["deletionProtection"] is True


def test_cloud_run_reads_secrets_only_as_secret_manager_references(plan: Plan) -> None:
    envs = plan.one(RUN).get("template.containers.0.envs")
    by_name = {e["name"]: e for e in envs}
    for name in ("DATABASE_URL", "REDIS_AUTH"):
        ref = by_name[name]["valueSource"]["secretKeyRef"]
        assert ref["secret"].startswith("bulwark-")
        assert "value" not in by_name[name]
    for env in envs:
        assert "postgresql://" not in str(env.get("value", ""))
    # The Redis CA is public and lets the app verify the TLS endpoint.
    assert by_name["REDIS_CA_CERT"]["value"].startswith("-----BEGIN CERTIFICATE-----")


def test_cloud_run_has_a_dedicated_account_with_no_project_role(plan: Plan) -> None:
    run = plan.one(RUN)
    account = run.get("template.serviceAccount")
    assert account.startswith("bulwark-")
    assert "-run@" in account
    assert "compute@developer" not in account
    member = f"serviceAccount:{account}"
    assert not [r for r in plan.of_type(PROJECT_IAM) if r.inputs["member"] == member]
    readable = {
        r.inputs["secretId"]
        for r in plan.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
        if r.inputs["member"] == member
    }
    name = plan.settings.name
    assert readable == {f"{name}-database-url", f"{name}-redis-auth"}  # not the DB password


# ----------------------------------------------------------------------------- CI identity


PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
POOL = "gcp:iam/workloadIdentityPool:WorkloadIdentityPool"
SA_IAM = "gcp:serviceaccount/iAMMember:IAMMember"


def test_wif_provider_is_pinned_to_repository_and_branch(plan: Plan) -> None:
    provider = plan.one(PROVIDER, "ci-provider")
    condition = provider.inputs["attributeCondition"]
    ci = plan.settings.ci
    assert conjuncts(condition)[:2] == [
        f"assertion.repository == '{ci.github_repository}'",
        f"assertion.ref == 'refs/heads/{ci.branch}'",
    ]
    if ci.github_repository_id:
        assert f"assertion.repository_id == '{ci.github_repository_id}'" in conjuncts(condition)
    assert provider.get("oidc.issuerUri") == "https://token.actions.githubusercontent.com"


def test_the_preview_provider_admits_pull_requests_into_the_branch_only(plan: Plan) -> None:
    ci = plan.settings.ci
    parts = conjuncts(plan.one(PROVIDER, "ci-reader-provider").inputs["attributeCondition"])
    assert parts[:3] == [
        f"assertion.repository == '{ci.github_repository}'",
        "assertion.event_name == 'pull_request'",
        f"assertion.base_ref == '{ci.branch}'",
    ]
    assert not any("assertion.ref ==" in part for part in parts)


def test_deployer_and_previewer_are_in_separate_pools(plan: Plan) -> None:
    """A principalSet spans its pool: a pull request's token must not be in the deployer's."""
    pools = {r.name: r.inputs["workloadIdentityPoolId"] for r in plan.of_type(POOL)}
    name = plan.settings.name
    assert pools == {"ci-pool": f"{name}-github", "ci-reader-pool": f"{name}-github-ro"}
    for pool_id in pools.values():
        assert re.fullmatch(r"[a-z][a-z0-9-]{3,31}", pool_id)
    users = {
        r.name: r.inputs["member"] for r in plan.of_type(SA_IAM)
        if r.inputs["role"] == "roles/iam.workloadIdentityUser"
    }  # fmt: skip
    repo = plan.settings.ci.github_repository
    assert users["ci-wif-user"].endswith(
        f"/workloadIdentityPools/{name}-github/attribute.repository/{repo}"
    )
    assert users["ci-reader-wif-user"].endswith(
        f"/workloadIdentityPools/{name}-github-ro/attribute.repository/{repo}"
    )


def test_the_previewer_may_only_read(plan: Plan) -> None:
    reader = f"serviceAccount:{plan.settings.name}-reader@"
    roles = {
        r.inputs["role"] for r in plan.of_type(PROJECT_IAM) if r.inputs["member"].startswith(reader)
    }
    assert roles == set(READER_ROLES)
    assert all(READ_ONLY_ROLE.match(role) for role in roles)
    assert not roles & (BASIC_ROLES | {"roles/secretmanager.secretAccessor"})
    acts = [r for r in plan.of_type(SA_IAM) if r.inputs["member"].startswith(reader)]
    assert acts == []  # it acts as no account


def test_only_the_pinned_repository_may_impersonate_the_ci_accounts(plan: Plan) -> None:
    bindings = [
        r for r in plan.of_type(SA_IAM) if r.inputs["role"] == "roles/iam.workloadIdentityUser"
    ]  # fmt: skip
    assert len(bindings) == 2
    for binding in bindings:
        assert binding.inputs["member"].endswith(
            f"/attribute.repository/{plan.settings.ci.github_repository}"
        )
        assert binding.inputs["member"].startswith("principalSet://iam.googleapis.com/projects/")


@pytest.mark.parametrize("role", sorted(BASIC_ROLES | {"roles/iam.serviceAccountUser"}))
def test_no_basic_roles_and_no_project_wide_act_as(plan: Plan, role: str) -> None:
    assert role not in {r.inputs["role"] for r in plan.of_type(PROJECT_IAM)}
    assert role not in DEPLOYER_ROLES


def test_deployer_acts_as_only_the_workload_accounts(plan: Plan) -> None:
    acts_as = [
        r for r in plan.of_type("gcp:serviceaccount/iAMMember:IAMMember")
        if r.inputs["role"] == "roles/iam.serviceAccountUser"
    ]  # fmt: skip
    targets = {r.inputs["serviceAccountId"].rsplit("/", 1)[1].split("@")[0] for r in acts_as}
    expected = {f"{plan.settings.name}-run"}
    if plan.settings.pooler.mode == "pgbouncer":
        expected.add(f"{plan.settings.name}-pgbouncer")
    assert targets == expected


def test_the_deployer_holds_nothing_it_could_make_itself_owner_with(plan: Plan) -> None:
    """No serviceAccountAdmin, keyAdmin or unconditioned projectIamAdmin; where the stack grants
    project roles to its workloads (PgBouncer mode), projectIamAdmin may grant those only."""
    deployer = f"serviceAccount:{plan.settings.name}-deployer@"
    grants = [r for r in plan.of_type(PROJECT_IAM) if r.inputs["member"].startswith(deployer)]
    roles = {r.inputs["role"] for r in grants}
    assert not roles & {"roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountKeyAdmin",
                        "roles/iam.securityAdmin", "roles/owner", "roles/editor"}  # fmt: skip
    admin = [r for r in grants if r.inputs["role"] == "roles/resourcemanager.projectIamAdmin"]
    if plan.settings.pooler.mode == "pgbouncer":
        (only,) = admin
        assert only.inputs["condition"]["expression"] == (
            "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"
            ".hasOnly(['roles/logging.logWriter', 'roles/monitoring.metricWriter'])"
        )
    else:
        assert admin == []
