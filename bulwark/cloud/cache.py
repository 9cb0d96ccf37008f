"""Memorystore for Redis: AUTH on, TLS in transit, private service access only."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from bulwark.cloud.options import child_options
from bulwark.cloud.secrets import StoredSecret, StoredSecretArgs
from bulwark.settings.cloud import CacheSettings

REDIS_TLS_PORT = 6378  # Memorystore serves TLS on 6378 when transit encryption is on


@dataclass(frozen=True)
class RedisArgs:
    """+ settings: cache settings; + network_id, services_range: the VPC and the private
    services access range; + peering: the connection to wait for; + deletion_protection."""

    project: str
    region: str
    base_name: str
    settings: CacheSettings
    network_id: pulumi.Input[str]
    services_range: pulumi.Input[str]
    peering: pulumi.Resource
    deletion_protection: bool
    labels: dict[str, str]


class RedisCache(pulumi.ComponentResource):
    """The Redis instance and its AUTH string in Secret Manager.

    Outputs: `host`, `port`, `auth_secret` (the StoredSecret), `server_ca` (the CA clients pin).
    """

    def __init__(
        self, name: str, args: RedisArgs, *, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bulwark:cache:RedisCache", name, None, opts)
        s = args.settings
        self.instance = gcp.redis.Instance(
            f"{name}-instance",
            project=args.project,
            name=f"{args.base_name}-redis",
            region=args.region,
            tier=s.tier,
            memory_size_gb=s.memory_size_gb,
            redis_version=s.redis_version,
            auth_enabled=True,
            transit_encryption_mode="SERVER_AUTHENTICATION",
            connect_mode="PRIVATE_SERVICE_ACCESS",
            authorized_network=args.network_id,
            reserved_ip_range=args.services_range,
            persistence_config=gcp.redis.InstancePersistenceConfigArgs(
                persistence_mode="RDB", rdb_snapshot_period="TWELVE_HOURS"
            )
            if s.persistence
            else gcp.redis.InstancePersistenceConfigArgs(persistence_mode="DISABLED"),
            maintenance_policy=gcp.redis.InstanceMaintenancePolicyArgs(
                weekly_maintenance_windows=[
                    gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowArgs(
                        day=s.maintenance_day,
                        start_time=gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowStartTimeArgs(
                            hours=s.maintenance_hour, minutes=0
                        ),
                    )
                ]
            ),
            deletion_protection=args.deletion_protection,
            labels=args.labels,
            opts=child_options(self, opts, args.peering),
        )
        self.auth_secret = StoredSecret(
            f"{name}-auth",
            StoredSecretArgs(
                project=args.project,
                secret_id=f"{args.base_name}-redis-auth",
                value=pulumi.Output.secret(self.instance.auth_string),
                labels=args.labels,
            ),
            opts=child_options(self, opts),
        )
        self.host = self.instance.host
        self.port = self.instance.port
        self.server_ca = self.instance.server_ca_certs.apply(
            lambda certs: certs[0].cert if certs else None
        )
        self.register_outputs(
            {
                "host": self.host,
                "port": self.port,
                "auth_secret": self.auth_secret.secret_id,
                "server_ca": self.server_ca,
            }
        )
