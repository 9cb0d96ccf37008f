"""Cloud SQL for PostgreSQL: private IP only, TLS only, backups with PITR, both protections."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from bulwark.cloud.options import child_options
from bulwark.cloud.secrets import StoredSecret, StoredSecretArgs
from bulwark.pooling.keys import RESERVED_LABEL
from bulwark.settings.cloud import POOLER_PORT, DatabaseSettings

# CIS GCP 6.2.x logging flags (checkov ids in docs/design.md), plus pgaudit.
CIS_FLAGS: tuple[tuple[str, str], ...] = (
    ("log_error_verbosity", "default"),  # 6.2.1
    ("log_connections", "on"),  # 6.2.2, CKV_GCP_52
    ("log_disconnections", "on"),  # 6.2.3, CKV_GCP_53
    ("log_statement", "ddl"),  # 6.2.4, CKV_GCP_111
    ("log_min_messages", "warning"),  # 6.2.5, CKV_GCP_55
    ("log_min_error_statement", "error"),  # 6.2.6, CKV_GCP_109
    ("log_min_duration_statement", "-1"),  # 6.2.7, CKV_GCP_57: no statement text in logs
    ("cloudsql.enable_pgaudit", "on"),  # 6.2.8, CKV_GCP_110
)

# 40 alphanumerics: about 238 bits, and nothing to escape in a DSN.
PASSWORD_LENGTH = 40


@dataclass(frozen=True)
class PostgresArgs:
    """+ settings: the validated database settings; + network_id, services_range: where the
    private IP comes from; + peering: the servicenetworking connection to wait for;
    + pool_flags: managed pooling flags (empty: no managed pooler)."""

    project: str
    region: str
    base_name: str
    settings: DatabaseSettings
    network_id: pulumi.Input[str]
    services_range: pulumi.Input[str]
    peering: pulumi.Resource
    pool_flags: Sequence[tuple[str, str]] = ()
    labels: dict[str, str] | None = None


class PostgresDatabase(pulumi.ComponentResource):
    """The instance, the app's database and user, and the user's password in Secret Manager.

    Outputs: `private_ip`, `connection_name`, `password_secret` (the StoredSecret), and
    `password` (secret Output, for building the pooler DSN).
    """

    def __init__(
        self, name: str, args: PostgresArgs, *, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bulwark:database:PostgresDatabase", name, None, opts)
        child = child_options(self, opts)
        s = args.settings
        flags = list(CIS_FLAGS)
        if s.max_connections is not None:
            flags.append(("max_connections", str(s.max_connections)))
        pool_configs = (
            [
                gcp.sql.DatabaseInstanceSettingsConnectionPoolConfigArgs(
                    connection_pooling_enabled=True,
                    flags=[
                        gcp.sql.DatabaseInstanceSettingsConnectionPoolConfigFlagArgs(
                            name=flag, value=value
                        )
                        for flag, value in args.pool_flags
                    ],
                )
            ]
            if args.pool_flags
            else None
        )
        self.instance = gcp.sql.DatabaseInstance(
            f"{name}-instance",
            project=args.project,
            name=f"{args.base_name}-pg",
            region=args.region,
            database_version=s.version,
            # Pulumi-side layer: `pulumi destroy` and replacements stop here.
            deletion_protection=s.deletion_protection,
            settings=gcp.sql.DatabaseInstanceSettingsArgs(
                tier=s.tier,
                edition=s.edition,
                availability_type=s.availability,
                # GCP-side layer: the console, gcloud and the API refuse to delete too.
                deletion_protection_enabled=s.deletion_protection,
                disk_type="PD_SSD",
                disk_size=s.disk_size_gb,
                disk_autoresize=True,
                disk_autoresize_limit=s.disk_autoresize_limit_gb,
                ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                    ipv4_enabled=False,
                    private_network=args.network_id,
                    allocated_ip_range=args.services_range,
                    ssl_mode="ENCRYPTED_ONLY",
                    enable_private_path_for_google_cloud_services=False,
                ),
                backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                    enabled=True,
                    point_in_time_recovery_enabled=True,
                    start_time=s.backup_start_time,
                    transaction_log_retention_days=s.log_retention_days,
                    backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                        retained_backups=s.retained_backups, retention_unit="COUNT"
                    ),
                ),
                maintenance_window=gcp.sql.DatabaseInstanceSettingsMaintenanceWindowArgs(
                    day=s.maintenance_day, hour=s.maintenance_hour, update_track="stable"
                ),
                insights_config=gcp.sql.DatabaseInstanceSettingsInsightsConfigArgs(
                    query_insights_enabled=True,
                    query_string_length=1024,
                    record_application_tags=True,
                    # Client addresses are Cloud Run's internal IPs: noise, not insight.
                    record_client_address=False,
                ),
                database_flags=[
                    gcp.sql.DatabaseInstanceSettingsDatabaseFlagArgs(name=flag, value=value)
                    for flag, value in flags
                ],
                connection_pool_configs=pool_configs,
                # The slots the budget keeps free, where policy reads them.
                user_labels=(args.labels or {})
                | {RESERVED_LABEL: str(args.settings.reserved_connections)},
            ),
            opts=child_options(self, opts, args.peering),
        )
        self.database = gcp.sql.Database(
            f"{name}-db",
            project=args.project,
            instance=self.instance.name,
            name=s.database_name,
            opts=child,
        )
        self._password = random.RandomPassword(
            f"{name}-password", length=PASSWORD_LENGTH, special=False, opts=child
        )
        self.password: pulumi.Output[str] = pulumi.Output.secret(self._password.result)
        self.user = gcp.sql.User(
            f"{name}-user",
            project=args.project,
            instance=self.instance.name,
            name=s.user_name,
            password=self.password,
            # Postgres cannot drop a role that owns objects; leave it to the instance's fate.
            deletion_policy="ABANDON",
            opts=child,
        )
        self.password_secret = StoredSecret(
            f"{name}-password-secret",
            StoredSecretArgs(
                project=args.project,
                secret_id=f"{args.base_name}-db-password",
                value=self.password,
                labels=args.labels or {},
            ),
            opts=child,
        )
        self.private_ip = self.instance.private_ip_address
        self.connection_name = self.instance.connection_name
        self.database_name = self.database.name
        self.user_name = self.user.name
        self.pooler_port = POOLER_PORT
        self.register_outputs(
            {
                "private_ip": self.private_ip,
                "connection_name": self.connection_name,
                "database": self.database_name,
                "user": self.user_name,
                "password_secret": self.password_secret.secret_id,
            }
        )
