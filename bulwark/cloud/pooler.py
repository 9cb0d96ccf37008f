"""The transaction pooler: Cloud SQL's managed pooling, or PgBouncer on a small private VM.

Either way the app gets one DSN (a secret, in Secret Manager) pointing at port 6432 and the
driver settings that are safe for that pooler.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from bulwark.cloud.database import PostgresDatabase
from bulwark.cloud.identity import identity
from bulwark.cloud.options import child_options
from bulwark.cloud.secrets import StoredSecret, StoredSecretArgs
from bulwark.pooling.budget import Budget
from bulwark.pooling.driver import DriverSettings
from bulwark.pooling.keys import (
    PGBOUNCER_MAX_CLIENT_CONN,
    PGBOUNCER_POOL_MODE,
    PGBOUNCER_POOL_SIZE,
    PGBOUNCER_PREPARED,
    PGBOUNCER_VERSION,
)
from bulwark.settings.cloud import POOLER_PORT, PgBouncerVmSettings, PoolerSettings

# Google's IAP TCP forwarding range: the only way SSH reaches a VM without a public IP.
IAP_RANGE = "35.235.240.0/20"
VM_ROLES = (
    "roles/logging.logWriter",  # the ops agent ships PgBouncer's logs
    "roles/monitoring.metricWriter",  # and its metrics
)
POSTGRES_PORT = 5432


def managed_pool_flags(settings: PoolerSettings, pool_size: int) -> tuple[tuple[str, str], ...]:
    """Flags of Cloud SQL managed connection pooling, sized from the connection budget."""
    return (
        ("pool_mode", "transaction"),
        ("max_pool_size", str(pool_size)),
        ("max_client_connections", str(settings.max_client_connections)),
    )


def dsn(
    user: pulumi.Input[str],
    password: pulumi.Input[str],
    host: pulumi.Input[str],
    database: pulumi.Input[str],
) -> pulumi.Output[str]:
    """postgresql:// DSN through the pooler, TLS required; secret because it holds the password."""
    return pulumi.Output.secret(
        pulumi.Output.format(
            "postgresql://{0}:{1}@{2}:{3}/{4}?sslmode=require",
            user,
            password,
            host,
            POOLER_PORT,
            database,
        )
    )


@dataclass(frozen=True)
class PoolerArgs:
    """+ settings: pooler settings; + pool_size: server pool size from the budget (+ budget:
    the whole of it, which the PgBouncer host's settings repeat);
    + database: the PostgresDatabase behind the pooler; + driver: safe driver settings;
    + network_id, client_cidr: the VPC and the Cloud Run subnet allowed to connect;
    + pooler_cidr, zone, flow_logs: where the PgBouncer VM lives (pgbouncer mode)."""

    project: str
    region: str
    zone: str
    base_name: str
    settings: PoolerSettings
    pool_size: int
    budget: Budget
    database: PostgresDatabase
    driver: DriverSettings
    network_id: pulumi.Input[str]
    client_cidr: str
    pooler_cidr: str
    flow_logs: bool
    labels: dict[str, str]


def pgbouncer_host_settings(
    args: PoolerArgs, pg: PgBouncerVmSettings, listen: str, backend: str, database: str,
    user: str, secret: str,
) -> dict[str, object]:  # fmt: skip
    """The PgBouncer VM's `bulwark.pgbouncer` settings (bulwark/settings/pooler.py): the same
    pool size, client limit and connection budget the stack computed, TLS to Cloud SQL, and
    the Secret Manager secret the operator fetches the password from."""
    budget = args.budget
    return {
        "listen_address": listen,
        "port": POOLER_PORT,
        "client_ranges": [args.client_cidr],
        "clients": dataclasses.asdict(budget.clients),
        "max_client_conn": budget.pooler.client_limit,
        "default_pool_size": args.pool_size,
        "server_max_connections": budget.postgres.max_connections,
        "reserved_connections": budget.postgres.reserved,
        "max_prepared_statements": pg.max_prepared_statements,
        "server_tls_sslmode": "require",  # Cloud SQL takes encrypted connections only
        "databases": [
            {
                "name": database,
                "host": backend,
                "port": POSTGRES_PORT,
                "user": user,
                "password_file": f"~/.config/bulwark/{secret}",
                "password_secret": secret,
            }
        ],
    }


class TransactionPooler(pulumi.ComponentResource):
    """The pooler in front of Postgres, and the DSN secret the app reads.

    managed: nothing to create beyond the DSN (the flags live on the instance; the pooler
    listens on the instance's private IP, port 6432). pgbouncer: a VM with no external IP in
    its own subnet (the only one with Cloud NAT, for packages), reachable on 6432 from the
    Cloud Run subnet only and on SSH from IAP only; `inventory` is what pyinfra needs.
    """

    def __init__(
        self, name: str, args: PoolerArgs, *, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bulwark:pooler:TransactionPooler", name, None, opts)
        self._name_base = name
        self._child = child_options(self, opts)
        self.mode = args.settings.mode
        self.port = POOLER_PORT
        self.inventory: pulumi.Output[dict[str, object]] | None = None
        self.host: pulumi.Output[str] = args.database.private_ip
        if self.mode == "pgbouncer":
            self.host, self.inventory = self._pgbouncer_vm(args)
        db = args.database
        self.dsn = dsn(db.user_name, db.password, self.host, db.database_name)
        self.dsn_secret = StoredSecret(
            f"{name}-dsn",
            StoredSecretArgs(
                project=args.project,
                secret_id=f"{args.base_name}-database-url",
                value=self.dsn,
                labels=args.labels,
            ),
            opts=self._child,
        )
        self.driver = args.driver
        outputs: dict[str, object] = {
            "mode": self.mode,
            "host": self.host,
            "port": self.port,
            "dsn_secret": self.dsn_secret.secret_id,
            "driver": self.driver.as_dict(),
        }
        if self.inventory is not None:
            outputs["inventory"] = self.inventory
        self.register_outputs(outputs)

    def _pgbouncer_vm(
        self, args: PoolerArgs
    ) -> tuple[pulumi.Output[str], pulumi.Output[dict[str, object]]]:
        name, child = self._name_base, self._child
        tag = f"{args.base_name}-pgbouncer"
        pg = args.settings.pgbouncer
        self.subnet = gcp.compute.Subnetwork(
            f"{name}-subnet",
            project=args.project,
            name=f"{args.base_name}-pooler",
            region=args.region,
            network=args.network_id,
            ip_cidr_range=args.pooler_cidr,
            private_ip_google_access=True,
            log_config=gcp.compute.SubnetworkLogConfigArgs(
                aggregation_interval="INTERVAL_5_SEC",
                flow_sampling=0.5,
                metadata="INCLUDE_ALL_METADATA",
            )
            if args.flow_logs
            else None,
            opts=child,
        )
        self.router = gcp.compute.Router(
            f"{name}-router",
            project=args.project,
            name=f"{args.base_name}-pooler-router",
            region=args.region,
            network=args.network_id,
            opts=child,
        )
        # Outbound only, for apt: the VM stays unreachable from the internet.
        self.nat = gcp.compute.RouterNat(
            f"{name}-nat",
            project=args.project,
            name=f"{args.base_name}-pooler-nat",
            region=args.region,
            router=self.router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
            subnetworks=[
                gcp.compute.RouterNatSubnetworkArgs(
                    name=self.subnet.id, source_ip_ranges_to_nats=["ALL_IP_RANGES"]
                )
            ],
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=child,
        )
        vm = identity(
            name,
            project=args.project,
            account_id=f"{args.base_name}-pgbouncer",
            display_name="PgBouncer VM (bulwark)",
            roles=VM_ROLES,
            opts=child,
        )
        self.account, member, self.roles = vm.account, vm.member, vm.roles
        # PgBouncer authenticates to Postgres as the app user: it reads that one secret.
        self.password_reader = args.database.password_secret.grant("pgbouncer", member)
        self.pooler_firewall = gcp.compute.Firewall(
            f"{name}-allow-clients",
            project=args.project,
            name=f"{args.base_name}-pgbouncer-clients",
            network=args.network_id,
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[str(POOLER_PORT)])],
            source_ranges=[args.client_cidr],
            target_tags=[tag],
            log_config=gcp.compute.FirewallLogConfigArgs(metadata="INCLUDE_ALL_METADATA"),
            opts=child,
        )
        self.ssh_firewall = gcp.compute.Firewall(
            f"{name}-allow-iap-ssh",
            project=args.project,
            name=f"{args.base_name}-pgbouncer-iap-ssh",
            network=args.network_id,
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
            source_ranges=[IAP_RANGE],
            target_tags=[tag],
            log_config=gcp.compute.FirewallLogConfigArgs(metadata="INCLUDE_ALL_METADATA"),
            opts=child,
        )
        self.vm = gcp.compute.Instance(
            f"{name}-vm",
            project=args.project,
            name=f"{args.base_name}-pgbouncer",
            zone=args.zone,
            machine_type=pg.machine_type,
            tags=[tag],
            boot_disk=gcp.compute.InstanceBootDiskArgs(
                initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                    image=pg.image, size=pg.disk_size_gb, type="pd-balanced"
                )
            ),
            # No access_configs: no external IP.
            network_interfaces=[
                gcp.compute.InstanceNetworkInterfaceArgs(subnetwork=self.subnet.id)
            ],
            service_account=gcp.compute.InstanceServiceAccountArgs(
                email=self.account.email, scopes=["cloud-platform"]
            ),
            shielded_instance_config=gcp.compute.InstanceShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True
            ),
            metadata={
                "enable-oslogin": "TRUE",  # SSH keys come from IAM, not instance metadata
                "block-project-ssh-keys": "TRUE",
                "serial-port-enable": "FALSE",
                # What pyinfra writes to pgbouncer.ini, visible to policy at preview time so
                # the pooler mode and the connection budget are checked before anything runs.
                PGBOUNCER_POOL_MODE: "transaction",
                PGBOUNCER_MAX_CLIENT_CONN: str(args.settings.max_client_connections),
                PGBOUNCER_POOL_SIZE: str(args.pool_size),
                PGBOUNCER_PREPARED: str(pg.max_prepared_statements),
                PGBOUNCER_VERSION: pg.version,
            },
            can_ip_forward=False,
            allow_stopping_for_update=True,
            labels=args.labels,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.nat])),
        )
        ip = self.vm.network_interfaces.apply(lambda nics: nics[0].network_ip or "")
        db = args.database
        inventory = pulumi.Output.all(
            self.vm.name, ip, db.private_ip, db.database_name, db.user_name,
            db.password_secret.secret_id,
        ).apply(
            lambda v: {
                "host": v[0],
                "ssh_hostname": v[1],
                "project": args.project,
                "zone": args.zone,
                "ssh_via": "iap",
                # The host's `bulwark` data, in the shape `bulwark harden` validates.
                "bulwark": {"pgbouncer": pgbouncer_host_settings(args, pg, *v[1:])},
            }
        )  # fmt: skip
        return ip, inventory
