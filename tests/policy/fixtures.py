"""Resource fixtures for the rules: one compliant shape per type (as `bulwark plan` and
CrossGuard hand them over: camelCase keys), and for every rule the change that violates it."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from bulwark.policy.rules import Resource
from bulwark.policy.rules import types as t

SA = "bulwark-prod-run@acme-bulwark-prod.iam.gserviceaccount.com"
DEPLOYER = "bulwark-prod-deployer@acme-bulwark-prod.iam.gserviceaccount.com"
VPC = "projects/acme-bulwark-prod/global/networks/bulwark-prod-vpc"
DIGEST = "sha256:" + "3f1c2b9d8e7a6f5e" * 4
LABELS = {"app": "bulwark", "env": "prod", "managed-by": "pulumi"}
DELETE = object()

GOOD: dict[str, dict[str, Any]] = {
    t.SQL_INSTANCE: {
        "databaseVersion": "POSTGRES_17",
        "deletionProtection": True,
        "settings": {
            "tier": "db-perf-optimized-N-8",
            "edition": "ENTERPRISE_PLUS",
            "availabilityType": "REGIONAL",
            "deletionProtectionEnabled": True,
            "userLabels": {**LABELS, "bulwark-reserved-connections": "10"},
            "ipConfiguration": {"ipv4Enabled": False, "privateNetwork": VPC,
                                "sslMode": "ENCRYPTED_ONLY"},
            "backupConfiguration": {
                "enabled": True, "pointInTimeRecoveryEnabled": True,
                "backupRetentionSettings": {"retainedBackups": 30, "retentionUnit": "COUNT"},
            },
            "databaseFlags": [
                {"name": "log_error_verbosity", "value": "default"},
                {"name": "log_connections", "value": "on"},
                {"name": "log_disconnections", "value": "on"},
                {"name": "log_statement", "value": "ddl"},
                {"name": "log_min_messages", "value": "warning"},
                {"name": "log_min_error_statement", "value": "error"},
                {"name": "log_min_duration_statement", "value": "-1"},
                {"name": "cloudsql.enable_pgaudit", "value": "on"},
            ],
            "insightsConfig": {"queryInsightsEnabled": True, "recordClientAddress": False},
            "connectionPoolConfigs": [{
                "connectionPoolingEnabled": True,
                "flags": [{"name": "pool_mode", "value": "transaction"},
                          {"name": "max_pool_size", "value": "395"},
                          {"name": "max_client_connections", "value": "2000"}],
            }],
        },
    },
    t.RUN_SERVICE: {
        "deletionProtection": True,
        "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        "invokerIamDisabled": False,
        "labels": {**LABELS, "bulwark-rollout-surge-percent": "100"},
        "template": {
            "serviceAccount": SA,
            "maxInstanceRequestConcurrency": 40,
            "scaling": {"maxInstanceCount": 40, "minInstanceCount": 2},
            "vpcAccess": {"egress": "PRIVATE_RANGES_ONLY",
                          "networkInterfaces": [{"network": VPC}]},
            "containers": [{
                "image": f"europe-west1-docker.pkg.dev/acme/app/api@{DIGEST}",
                "envs": [
                    {"name": "WEB_CONCURRENCY", "value": "2"},
                    {"name": "DB_POOL_MAX_SIZE", "value": "5"},
                    {"name": "DB_PREPARE_THRESHOLD", "value": "none"},
                    {"name": "DATABASE_URL", "valueSource": {"secretKeyRef": {
                        "secret": "bulwark-prod-database-url", "version": "latest"}}},
                ],
                "startupProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
            }],
        },
    },
    t.RUN_IAM_MEMBER: {"role": "roles/run.invoker",
                       "member": "serviceAccount:edge@acme.iam.gserviceaccount.com"},
    t.REDIS_INSTANCE: {
        "authEnabled": True, "transitEncryptionMode": "SERVER_AUTHENTICATION",
        "connectMode": "PRIVATE_SERVICE_ACCESS", "authorizedNetwork": VPC,
        "tier": "STANDARD_HA", "deletionProtection": True, "labels": LABELS,
    },
    t.PROJECT_IAM_MEMBER: {"role": "roles/run.admin", "member": f"serviceAccount:{DEPLOYER}"},
    t.SA_IAM_MEMBER: {
        "role": "roles/iam.workloadIdentityUser",
        "member": "principalSet://iam.googleapis.com/projects/1/locations/global/"
                  "workloadIdentityPools/p/attribute.repository/acme/platform",
    },
    t.SECRET_IAM_MEMBER: {"role": "roles/secretmanager.secretAccessor",
                          "member": f"serviceAccount:{SA}"},
    t.SA_KEY: {"serviceAccountId": SA},
    t.WIF_PROVIDER: {
        "attributeCondition": "assertion.repository == 'acme/platform' && assertion.ref == "
                              "'refs/heads/main' && assertion.repository_id == '812345678'",
    },
    t.KMS_KEY: {"rotationPeriod": "7776000s"},
    t.NETWORK: {"autoCreateSubnetworks": False},
    t.SUBNETWORK: {"privateIpGoogleAccess": True,
                   "logConfig": {"metadata": "INCLUDE_ALL_METADATA"}},
    t.FIREWALL: {"direction": "INGRESS", "sourceRanges": ["35.235.240.0/20"],
                 "allows": [{"protocol": "tcp", "ports": ["22"]}]},
    t.COMPUTE_INSTANCE: {
        "canIpForward": False,
        "networkInterfaces": [{"subnetwork": "pooler"}],
        "serviceAccount": {"email": "bulwark-prod-pgbouncer@acme.iam.gserviceaccount.com"},
        "shieldedInstanceConfig": {"enableSecureBoot": True, "enableVtpm": True,
                                   "enableIntegrityMonitoring": True},
        "metadata": {"enable-oslogin": "TRUE", "block-project-ssh-keys": "TRUE",
                     "serial-port-enable": "FALSE"},
    },
}  # fmt: skip

# Types whose only fixture is a violation (their mere presence is the finding).
ALWAYS_VIOLATING = {t.SA_KEY}

# rule id -> (type, {path: new value or DELETE}) that must violate it.
VIOLATIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "sql-no-public-ip": [(t.SQL_INSTANCE, {"settings.ipConfiguration.ipv4Enabled": True}),
                         (t.SQL_INSTANCE, {"settings.ipConfiguration.ipv4Enabled": DELETE})],
    "sql-private-network": [(t.SQL_INSTANCE, {"settings.ipConfiguration.privateNetwork": DELETE})],
    "sql-no-open-authorized-networks": [(t.SQL_INSTANCE, {
        "settings.ipConfiguration.authorizedNetworks": [{"value": "0.0.0.0/0"}]})],
    "sql-tls-required": [(t.SQL_INSTANCE, {"settings.ipConfiguration.sslMode":
                                           "ALLOW_UNENCRYPTED_AND_ENCRYPTED"})],
    "sql-backups-enabled": [(t.SQL_INSTANCE, {"settings.backupConfiguration.enabled": False})],
    "sql-pitr-enabled": [(t.SQL_INSTANCE, {
        "settings.backupConfiguration.pointInTimeRecoveryEnabled": False})],
    "sql-backup-retention": [(t.SQL_INSTANCE, {
        "settings.backupConfiguration.backupRetentionSettings.retainedBackups": 3})],
    "sql-ha-in-prod": [(t.SQL_INSTANCE, {"settings.availabilityType": "ZONAL"})],
    "sql-deletion-protection": [(t.SQL_INSTANCE, {"deletionProtection": False}),
                                (t.SQL_INSTANCE, {"settings.deletionProtectionEnabled": DELETE})],
    "sql-flag-log-error-verbosity": [(t.SQL_INSTANCE, {"flag:log_error_verbosity": "terse"})],
    "sql-flag-log-connections": [(t.SQL_INSTANCE, {"flag:log_connections": "off"})],
    "sql-flag-log-disconnections": [(t.SQL_INSTANCE, {"flag:log_disconnections": DELETE})],
    "sql-flag-log-statement": [(t.SQL_INSTANCE, {"flag:log_statement": "none"})],
    "sql-flag-log-min-messages": [(t.SQL_INSTANCE, {"flag:log_min_messages": "debug1"})],
    "sql-flag-log-min-error-statement": [(t.SQL_INSTANCE,
                                          {"flag:log_min_error_statement": "info"})],
    "sql-flag-log-min-duration-statement": [(t.SQL_INSTANCE,
                                             {"flag:log_min_duration_statement": "0"})],
    "sql-flag-enable-pgaudit": [(t.SQL_INSTANCE, {"flag:cloudsql.enable_pgaudit": "off"})],
    "sql-query-insights": [(t.SQL_INSTANCE, {"settings.insightsConfig.recordClientAddress": True})],
    "run-image-pinned-by-digest": [(t.RUN_SERVICE, {"template.containers.0.image":
                                                    "europe-west1-docker.pkg.dev/acme/app/api:latest"})],
    "run-dedicated-service-account": [
        (t.RUN_SERVICE, {"template.serviceAccount": DELETE}),
        (t.RUN_SERVICE, {"template.serviceAccount": "1234-compute@developer.gserviceaccount.com"}),
    ],
    "run-secrets-from-secret-manager": [
        (t.RUN_SERVICE, {"template.containers.0.envs.3": {"name": "DATABASE_URL",
                                                          "value": "postgresql://a:b@h/db"}}),
        (t.RUN_SERVICE, {"template.containers.0.envs.3": {"name": "STRIPE_API_KEY",
                                                          "value": "sk_live_x"}}),
        # Neutral names: only the value gives them away.
        *((t.RUN_SERVICE, {"template.containers.0.envs.3": {"name": name, "value": value}})
          for name, value in (("JWT_SIGNING", "q8Vz3LmN0pR7sT2uW5xY9aB4cD6eF1gH"),
                              ("APP_CONFIG", "-----BEGIN PRIVATE KEY-----\nMIIE"),
                              ("UPSTREAM", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"))),
    ],
    "run-private-egress": [(t.RUN_SERVICE, {"template.vpcAccess": DELETE})],
    "run-bounded-scaling": [(t.RUN_SERVICE, {"template.scaling.maxInstanceCount": DELETE})],
    "run-startup-probe": [(t.RUN_SERVICE, {"template.containers.0.startupProbe": DELETE})],
    "run-liveness-probe": [(t.RUN_SERVICE, {"template.containers.0.livenessProbe": DELETE})],
    "run-resource-limits": [(t.RUN_SERVICE, {"template.containers.0.resources": DELETE})],
    "run-ingress-not-public": [(t.RUN_SERVICE, {"ingress": "INGRESS_TRAFFIC_ALL"}),
                               (t.RUN_SERVICE, {"ingress": DELETE})],
    "run-invoker-iam-enforced": [(t.RUN_SERVICE, {"invokerIamDisabled": True})],
    "run-deletion-protection": [(t.RUN_SERVICE, {"deletionProtection": False})],
    "run-no-public-invoker": [(t.RUN_IAM_MEMBER, {"member": "allUsers"})],
    "redis-auth-enabled": [(t.REDIS_INSTANCE, {"authEnabled": False})],
    "redis-transit-encryption": [(t.REDIS_INSTANCE, {"transitEncryptionMode": "DISABLED"})],
    "redis-private-service-access": [(t.REDIS_INSTANCE, {"connectMode": "DIRECT_PEERING"})],
    "redis-ha-in-prod": [(t.REDIS_INSTANCE, {"tier": "BASIC"})],
    "redis-deletion-protection": [(t.REDIS_INSTANCE, {"deletionProtection": False})],
    "iam-no-basic-roles": [(t.PROJECT_IAM_MEMBER, {"role": "roles/editor"})],
    "iam-no-public-members": [(t.SECRET_IAM_MEMBER, {"member": "allAuthenticatedUsers"})],
    "iam-no-user-managed-sa-keys": [(t.SA_KEY, {})],
    "iam-no-project-impersonation": [(t.PROJECT_IAM_MEMBER,
                                      {"role": "roles/iam.serviceAccountTokenCreator"})],
    "iam-no-owner-escalation": [
        (t.PROJECT_IAM_MEMBER, {"role": "roles/resourcemanager.projectIamAdmin"}),
        (t.PROJECT_IAM_MEMBER, {"role": "roles/iam.serviceAccountAdmin"}),
        (t.PROJECT_IAM_MEMBER, {"role": "roles/iam.serviceAccountKeyAdmin"}),
        (t.PROJECT_IAM_MEMBER, {"role": "roles/resourcemanager.projectIamAdmin", "condition": {
            "title": "t", "expression": "api.getAttribute('iam.googleapis.com/modifiedGrants"
            "ByRole', []).hasOnly(['roles/logging.logWriter', 'roles/owner'])"}}),
    ],
    "secret-access-per-secret": [(t.PROJECT_IAM_MEMBER,
                                  {"role": "roles/secretmanager.secretAccessor"})],
    "secret-accessor-read-only": [(t.SECRET_IAM_MEMBER, {"role": "roles/secretmanager.admin"})],
    "wif-repository-pinned": [(t.WIF_PROVIDER, {"attributeCondition": "assertion.ref == "
                                                "'refs/heads/main' && assertion.repository_id"
                                                " == '812345678'"}),
                              (t.WIF_PROVIDER, {"attributeCondition": "(assertion.repository "
                                                "== 'acme/platform' || true) && assertion.ref"
                                                " == 'refs/heads/main' && assertion."
                                                "repository_id == '812345678'"})],
    "wif-ref-pinned": [(t.WIF_PROVIDER, {"attributeCondition": "assertion.repository == "
                                         "'acme/platform' && assertion.repository_id == "
                                         "'812345678'"}),
                       # a pull request's base branch, but any event (a push to any branch)
                       (t.WIF_PROVIDER, {"attributeCondition": "assertion.repository == "
                                         "'acme/platform' && assertion.base_ref == 'main' && "
                                         "assertion.repository_id == '812345678'"}),
                       # the pin inside a clause that an `||` can bypass
                       (t.WIF_PROVIDER, {"attributeCondition": "assertion.repository == "
                                         "'acme/platform' && (assertion.ref == 'refs/heads/main'"
                                         " || assertion.ref != '') && assertion.repository_id"
                                         " == '812345678'"})],
    "wif-repository-id-pinned": [(t.WIF_PROVIDER, {"attributeCondition": "assertion.repository"
                                                   " == 'acme/platform' && assertion.ref == "
                                                   "'refs/heads/main'"})],
    "wif-principal-scoped": [(t.SA_IAM_MEMBER, {"member": "principalSet://iam.googleapis.com/"
                                                "projects/1/locations/global/"
                                                "workloadIdentityPools/p/*"})],
    "kms-rotation-90-days": [(t.KMS_KEY, {"rotationPeriod": "31536000s"}),
                             (t.KMS_KEY, {"rotationPeriod": DELETE})],
    "network-custom-subnets": [(t.NETWORK, {"autoCreateSubnetworks": True})],
    "subnet-flow-logs": [(t.SUBNETWORK, {"logConfig": DELETE})],
    "subnet-private-google-access": [(t.SUBNETWORK, {"privateIpGoogleAccess": False})],
    "firewall-no-open-ssh": [(t.FIREWALL, {"sourceRanges": ["0.0.0.0/0"]})],
    "firewall-no-open-rdp": [(t.FIREWALL, {"sourceRanges": ["0.0.0.0/0"],
                                           "allows": [{"protocol": "tcp",
                                                       "ports": ["3000-4000"]}]})],
    "vm-no-public-ip": [(t.COMPUTE_INSTANCE, {"networkInterfaces.0.accessConfigs": [{}]})],
    "vm-shielded": [(t.COMPUTE_INSTANCE, {"shieldedInstanceConfig.enableSecureBoot": False})],
    "vm-os-login": [(t.COMPUTE_INSTANCE, {"metadata.enable-oslogin": DELETE})],
    "vm-serial-port-disabled": [(t.COMPUTE_INSTANCE, {"metadata.serial-port-enable": "TRUE"})],
    "vm-no-ip-forwarding": [(t.COMPUTE_INSTANCE, {"canIpForward": True})],
    "vm-dedicated-service-account": [(t.COMPUTE_INSTANCE, {"serviceAccount": DELETE})],
}  # fmt: skip


def _set(props: dict[str, Any], path: str, value: Any) -> None:
    if path.startswith("flag:"):
        flags = props["settings"]["databaseFlags"]
        name = path.removeprefix("flag:")
        flags[:] = [f for f in flags if f["name"] != name]
        if value is not DELETE:
            flags.append({"name": name, "value": value})
        return
    *parents, last = path.split(".")
    node: Any = props
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    elif value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value


def resource(
    type_token: str, changes: Mapping[str, Any] | None = None, name: str = "r"
) -> Resource:
    """A fixture resource: the compliant shape of `type_token` with `changes` applied."""
    props = copy.deepcopy(GOOD.get(type_token, {}))
    for path, value in (changes or {}).items():
        _set(props, path, value)
    return Resource(type_token, name, f"urn:pulumi:prod::bulwark::{type_token}::{name}", props)
