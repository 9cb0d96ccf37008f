"""Memorystore for Redis: AUTH, TLS, private service access, HA in prod, protected."""

from __future__ import annotations

from collections.abc import Sequence

from bulwark.policy.rules.base import RULES, NotApplicable, Resource, env_of
from bulwark.policy.rules.types import REDIS_INSTANCE


@RULES.resource(
    "redis-auth-enabled",
    types=REDIS_INSTANCE,
    title="Redis requires AUTH",
    severity="high",
    family="cache",
    rationale="Without AUTH any workload in the VPC can read and change the cache.",
    remediation="Set authEnabled to true and hand the AUTH string to the app from Secret Manager.",
    checkov="CKV_GCP_95",
)
def redis_auth_enabled(res: Resource) -> Sequence[str]:
    if res.get("authEnabled") is True:
        return []
    return ["authEnabled is not true: set it to true"]


@RULES.resource(
    "redis-transit-encryption",
    types=REDIS_INSTANCE,
    title="Redis encrypts traffic in transit",
    severity="high",
    family="cache",
    rationale="Redis speaks plain text by default: the AUTH string and the data cross the "
    "network readable.",
    remediation="Set transitEncryptionMode to SERVER_AUTHENTICATION and give the app the "
    "server CA.",
    checkov="CKV_GCP_97",
)
def redis_transit_encryption(res: Resource) -> Sequence[str]:
    mode = res.get("transitEncryptionMode")
    if mode == "SERVER_AUTHENTICATION":
        return []
    return [f"transitEncryptionMode is {mode or 'unset (DISABLED)'}: set SERVER_AUTHENTICATION"]


@RULES.resource(
    "redis-private-service-access",
    types=REDIS_INSTANCE,
    title="Redis is reached through private services access",
    severity="medium",
    family="cache",
    rationale="PRIVATE_SERVICE_ACCESS takes the address from the reserved range shared with "
    "Cloud SQL, managed and firewalled in one place.",
    remediation="Set connectMode to PRIVATE_SERVICE_ACCESS and authorizedNetwork to the VPC.",
)
def redis_private_service_access(res: Resource) -> Sequence[str]:
    found = []
    if res.get("connectMode") != "PRIVATE_SERVICE_ACCESS":
        found.append(
            f"connectMode is {res.get('connectMode') or 'unset (DIRECT_PEERING)'}: set "
            "PRIVATE_SERVICE_ACCESS"
        )
    if not res.get("authorizedNetwork"):
        found.append("authorizedNetwork is unset (the default network): set the stack's VPC")
    return found


@RULES.resource(
    "redis-ha-in-prod",
    types=REDIS_INSTANCE,
    title="Redis in prod keeps a replica in another zone",
    severity="medium",
    family="cache",
    rationale="BASIC has one node: a zone outage or maintenance empties the cache and drops "
    "every session.",
    remediation="Set tier to STANDARD_HA (remove the BASIC override).",
)
def redis_ha_in_prod(res: Resource) -> Sequence[str] | NotApplicable:
    if res.environment != "prod":
        return NotApplicable(f"environment {env_of(res)}: high availability is required in prod")
    if res.get("tier") == "STANDARD_HA":
        return []
    return [f"tier is {res.get('tier') or 'BASIC'} in prod: set STANDARD_HA"]


@RULES.resource(
    "redis-deletion-protection",
    types=REDIS_INSTANCE,
    title="Redis is protected from deletion",
    severity="medium",
    family="cache",
    rationale="Deleting the instance drops its data and its address, which the app has baked "
    "into its config.",
    remediation="Set deletionProtection to true.",
)
def redis_deletion_protection(res: Resource) -> Sequence[str]:
    if res.get("deletionProtection") is False:
        return ["deletionProtection is false: set it to true (bulwark:cache.deletion_protection)"]
    return []
