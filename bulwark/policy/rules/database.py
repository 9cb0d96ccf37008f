"""Cloud SQL for PostgreSQL: private, encrypted in transit, backed up, logged, protected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bulwark.policy.rules.base import RULES, NotApplicable, Resource, env_of, flag_value
from bulwark.policy.rules.types import SQL_INSTANCE

TLS_MODES = ("ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED")
MIN_RETAINED_BACKUPS = 7


@RULES.resource(
    "sql-no-public-ip",
    types=SQL_INSTANCE,
    title="Cloud SQL has no public IPv4 address",
    severity="critical",
    family="database",
    rationale="A public address exposes the Postgres port to the internet; private IP keeps "
    "the database reachable only from the VPC.",
    remediation="Set settings.ipConfiguration.ipv4Enabled to false and connect over the "
    "private network (private services access).",
    cis="6.6",
    checkov="CKV_GCP_60",
)
def sql_no_public_ip(res: Resource) -> Sequence[str]:
    if res.get("settings.ipConfiguration.ipv4Enabled") is False:
        return []
    return [
        "settings.ipConfiguration.ipv4Enabled is not false (GCP defaults it to true): set it "
        "to false and connect through the private network"
    ]


@RULES.resource(
    "sql-private-network",
    types=SQL_INSTANCE,
    title="Cloud SQL is attached to the VPC by private IP",
    severity="high",
    family="database",
    rationale="Without a private network the only way in is a public address.",
    remediation="Set settings.ipConfiguration.privateNetwork to the VPC (with a "
    "servicenetworking connection).",
    cis="6.6",
)
def sql_private_network(res: Resource) -> Sequence[str]:
    if res.get("settings.ipConfiguration.privateNetwork"):
        return []
    return [
        "settings.ipConfiguration.privateNetwork is unset: set it to the VPC's id and peer "
        "it with servicenetworking"
    ]


@RULES.resource(
    "sql-no-open-authorized-networks",
    types=SQL_INSTANCE,
    title="Cloud SQL authorizes no network open to the world",
    severity="critical",
    family="database",
    rationale="An authorized network of 0.0.0.0/0 lets any address on the internet try to log in.",
    remediation="Remove 0.0.0.0/0 (and ::/0) from settings.ipConfiguration.authorizedNetworks.",
    cis="6.5",
    checkov="CKV_GCP_11",
)
def sql_no_open_authorized_networks(res: Resource) -> Sequence[str]:
    return [
        f"settings.ipConfiguration.authorizedNetworks allows {net.get('value')}: remove it "
        "and reach the database over private IP"
        for net in res.items("settings.ipConfiguration.authorizedNetworks")
        if isinstance(net, Mapping) and net.get("value") in ("0.0.0.0/0", "::/0")
    ]


@RULES.resource(
    "sql-tls-required",
    types=SQL_INSTANCE,
    title="Cloud SQL accepts encrypted connections only",
    severity="high",
    family="database",
    rationale="Without an enforced SSL mode a client may send credentials and data in clear.",
    remediation="Set settings.ipConfiguration.sslMode to ENCRYPTED_ONLY (or "
    "TRUSTED_CLIENT_CERTIFICATE_REQUIRED).",
    cis="6.4",
    checkov="CKV_GCP_6",
)
def sql_tls_required(res: Resource) -> Sequence[str]:
    mode = res.get("settings.ipConfiguration.sslMode")
    if mode in TLS_MODES:
        return []
    return [
        f"settings.ipConfiguration.sslMode is {mode or 'unset'} (unencrypted connections "
        "allowed): set it to ENCRYPTED_ONLY"
    ]


@RULES.resource(
    "sql-backups-enabled",
    types=SQL_INSTANCE,
    title="Cloud SQL takes automated backups",
    severity="high",
    family="database",
    rationale="Without backups a bad migration or a deleted table cannot be undone.",
    remediation="Set settings.backupConfiguration.enabled to true.",
    cis="6.7",
    checkov="CKV_GCP_14",
)
def sql_backups_enabled(res: Resource) -> Sequence[str]:
    if res.get("settings.backupConfiguration.enabled") is True:
        return []
    return ["settings.backupConfiguration.enabled is not true: enable automated backups"]


@RULES.resource(
    "sql-pitr-enabled",
    types=SQL_INSTANCE,
    title="Cloud SQL keeps WAL for point-in-time recovery",
    severity="high",
    family="database",
    rationale="Daily backups lose up to a day of writes; point-in-time recovery restores to "
    "the minute before the mistake.",
    remediation="Set settings.backupConfiguration.pointInTimeRecoveryEnabled to true.",
)
def sql_pitr_enabled(res: Resource) -> Sequence[str]:
    if res.get("settings.backupConfiguration.pointInTimeRecoveryEnabled") is True:
        return []
    return [
        "settings.backupConfiguration.pointInTimeRecoveryEnabled is not true: enable it "
        "(bulwark's database component does by default)"
    ]


@RULES.resource(
    "sql-backup-retention",
    types=SQL_INSTANCE,
    title=f"Cloud SQL keeps at least {MIN_RETAINED_BACKUPS} daily backups",
    severity="medium",
    family="database",
    rationale="A problem noticed after a long weekend must still have a backup from before it.",
    remediation="Set settings.backupConfiguration.backupRetentionSettings.retainedBackups to "
    f"{MIN_RETAINED_BACKUPS} or more (database.retained_backups).",
)
def sql_backup_retention(res: Resource) -> Sequence[str]:
    kept = res.get("settings.backupConfiguration.backupRetentionSettings.retainedBackups")
    kept = 7 if kept is None else kept  # GCP's default
    if isinstance(kept, int | float) and kept >= MIN_RETAINED_BACKUPS:
        return []
    return [
        f"retainedBackups is {kept}: keep at least {MIN_RETAINED_BACKUPS} (set "
        "bulwark:database.retained_backups)"
    ]


@RULES.resource(
    "sql-ha-in-prod",
    types=SQL_INSTANCE,
    title="Cloud SQL in prod keeps a standby in another zone",
    severity="high",
    family="database",
    rationale="A zonal instance is down for the whole of a zone outage or a maintenance "
    "failover; REGIONAL fails over in about a minute.",
    remediation="Set settings.availabilityType to REGIONAL (remove the ZONAL override).",
)
def sql_ha_in_prod(res: Resource) -> Sequence[str] | NotApplicable:
    if res.environment != "prod":
        return NotApplicable(f"environment {env_of(res)}: high availability is required in prod")
    if res.get("settings.availabilityType") == "REGIONAL":
        return []
    return [
        f"settings.availabilityType is {res.get('settings.availabilityType') or 'ZONAL'} in "
        "prod: set it to REGIONAL"
    ]


@RULES.resource(
    "sql-deletion-protection",
    types=SQL_INSTANCE,
    title="Cloud SQL is protected from deletion on both layers",
    severity="high",
    family="database",
    rationale="deletionProtection stops `pulumi destroy` and replacements; "
    "settings.deletionProtectionEnabled stops the console, gcloud and the API. Either alone "
    "leaves a path that drops the database.",
    remediation="Set deletionProtection and settings.deletionProtectionEnabled to true.",
)
def sql_deletion_protection(res: Resource) -> Sequence[str]:
    found = []
    if res.get("deletionProtection") is False:
        found.append("deletionProtection (Pulumi-side) is false: set it to true")
    if res.get("settings.deletionProtectionEnabled") is not True:
        found.append("settings.deletionProtectionEnabled (GCP-side) is not true: set it to true")
    return found


# CIS GCP 6.2.x: Postgres logging flags, each with the value (or values) that pass.
_FLAGS: tuple[tuple[str, str, tuple[str, ...], str | None, str], ...] = (
    ("log_error_verbosity", "6.2.1", ("default", "verbose"), None,
     "errors are logged with enough detail to investigate"),
    ("log_connections", "6.2.2", ("on",), "CKV_GCP_52",
     "every connection attempt is in the log, so a brute force is visible"),
    ("log_disconnections", "6.2.3", ("on",), "CKV_GCP_53",
     "session ends and durations are in the log"),
    ("log_statement", "6.2.4", ("ddl", "mod", "all"), "CKV_GCP_111",
     "schema changes are in the log, so an auditor can tell who changed what"),
    ("log_min_messages", "6.2.5", ("warning", "error", "log", "fatal", "panic"), "CKV_GCP_55",
     "warnings and worse reach the log (and not the noise below)"),
    ("log_min_error_statement", "6.2.6", ("error", "log", "fatal", "panic"), "CKV_GCP_109",
     "the statement that caused an error is logged with it"),
    ("log_min_duration_statement", "6.2.7", ("-1",), "CKV_GCP_57",
     "statement texts (which may hold personal data) are not logged by duration"),
    ("cloudsql.enable_pgaudit", "6.2.8", ("on",), "CKV_GCP_110",
     "pgAudit gives the session and object audit trail auditors ask for"),
)  # fmt: skip


def _flag_rule(
    flag: str, cis: str, allowed: tuple[str, ...], checkov: str | None, why: str
) -> None:
    rule_id = "sql-flag-" + flag.removeprefix("cloudsql.").replace("_", "-")
    wanted = allowed[0]

    def check(res: Resource) -> Sequence[str]:
        value = flag_value(res, flag)
        if value is not None and value.lower() in allowed:
            return []
        return [
            f"database flag {flag} is {value or 'unset'}: set it to {wanted} in "
            "settings.databaseFlags"
        ]

    check.__name__ = rule_id.replace("-", "_")
    RULES.resource(
        rule_id,
        types=SQL_INSTANCE,
        title=f"Postgres flag {flag} is {' or '.join(allowed[:2])}",
        severity="medium" if flag != "cloudsql.enable_pgaudit" else "high",
        family="database",
        rationale=f"With {flag} = {wanted}, {why}.",
        remediation=f"Add {{name: {flag}, value: {wanted}}} to settings.databaseFlags.",
        cis=cis,
        checkov=checkov,
    )(check)


for _flag in _FLAGS:
    _flag_rule(*_flag)


@RULES.resource(
    "sql-query-insights",
    types=SQL_INSTANCE,
    title="Cloud SQL records query insights without client addresses",
    severity="low",
    family="database",
    rationale="Query insights find the slow statement behind an incident; client addresses "
    "are personal data the insights do not need.",
    remediation="Set settings.insightsConfig.queryInsightsEnabled to true and "
    "recordClientAddress to false.",
    enforcement="advisory",
)
def sql_query_insights(res: Resource) -> Sequence[str]:
    found = []
    if res.get("settings.insightsConfig.queryInsightsEnabled") is not True:
        found.append("settings.insightsConfig.queryInsightsEnabled is not true: enable it")
    if res.get("settings.insightsConfig.recordClientAddress") is True:
        found.append("settings.insightsConfig.recordClientAddress is true: set it to false")
    return found
