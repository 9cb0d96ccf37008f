"""Settings of the cloud stack (stacks/Pulumi.<stack>.yaml), each with its default and reason.

Config keys: `gcp:project` and `gcp:region` (shared with the provider), `bulwark:environment`,
and one object per area: `bulwark:network`, `bulwark:database`, `bulwark:pooler`,
`bulwark:cache`, `bulwark:service`, `bulwark:ci`. Defaults are the production choice; a
cheaper choice is an explicit, named value in the stack file, and prod refuses the ones that
would weaken it. Everything here is checked before a single resource is declared.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from bulwark.errors import ConfigError
from bulwark.pooling.budget import Budget, Clients, Pooler, Postgres, Tier, parse_tier, size_pools
from bulwark.secretscan import secret_setting
from bulwark.settings.load import Int, one_line, read_yaml
from bulwark.settings.net import check_address_text

POOLER_PORT = 6432  # Cloud SQL's managed pooler listens here; the PgBouncer VM uses the same.
AREAS = ("network", "database", "pooler", "cache", "service", "ci")
DIGEST_RE = re.compile(r"^[a-z0-9.\-]+(:\d+)?/[^@\s]+@sha256:[0-9a-f]{64}$")
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
MEMBER_RE = re.compile(r"^(user|serviceAccount|group|domain|principal|principalSet):\S+$")
# Names the app's plain env may not use: they are set by the stack or must be secret refs.
MANAGED_ENV = frozenset(
    {"DATABASE_URL", "REDIS_AUTH", "REDIS_HOST", "REDIS_PORT", "REDIS_CA_CERT",
     "DB_PREPARE_THRESHOLD", "DB_POOL_MAX_SIZE", "WEB_CONCURRENCY", "PORT",
     "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}  # the last three Cloud Run sets itself
)  # fmt: skip
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(check_address_text(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR range: use e.g. 10.8.0.0/24") from None
    if not net.is_private:
        raise ValueError(f"{value} is not a private range: use RFC 1918 space such as 10.8.0.0/24")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]


class NetworkSettings(BaseModel):
    """The VPC: one subnet for Cloud Run's Direct VPC egress, private services access."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    subnet_cidr: Cidr = Field(
        default="10.8.0.0/24",
        description="Subnet Cloud Run instances take their IPs from (Direct VPC egress needs "
        "about two per instance, and /26 at least).",
    )
    pooler_subnet_cidr: Cidr = Field(
        default="10.8.1.0/28",
        description="Subnet of the PgBouncer VM (pgbouncer mode only); the only one with NAT.",
    )
    services_range_prefix: Int = Field(
        default=16,
        ge=16,
        le=24,
        description="Prefix length of the private services access range that Cloud SQL and "
        "Memorystore take their private IPs from (/16 is Google's recommendation).",
    )
    flow_logs: bool = Field(default=True, description="VPC flow logs on the subnets (CIS GCP 3.8).")


class DatabaseSettings(BaseModel):
    """Cloud SQL for PostgreSQL: private IP only, TLS only, backups with PITR."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    version: str = Field(
        default="POSTGRES_17", pattern=r"^POSTGRES_\d+$", description="Postgres major version."
    )
    edition: Literal["ENTERPRISE", "ENTERPRISE_PLUS"] = Field(
        default="ENTERPRISE_PLUS",
        description="Enterprise Plus is needed for managed connection pooling and a 99.99% SLA.",
    )
    tier: str = Field(
        default="db-perf-optimized-N-2",
        description="Machine tier; sets vCPUs (managed poolers: one per 4) and memory "
        "(default max_connections).",
    )
    availability: Literal["REGIONAL", "ZONAL"] = Field(
        default="REGIONAL",
        description="REGIONAL keeps a standby in a second zone; prod refuses ZONAL.",
    )
    disk_size_gb: Int = Field(
        default=20, ge=10, le=65536, description="Initial disk; it grows automatically."
    )
    disk_autoresize_limit_gb: Int = Field(
        default=500, ge=0, le=65536, description="Cap on automatic growth (0: no cap)."
    )
    backup_start_time: str = Field(
        default="02:00", pattern=r"^\d\d:00$", description="Daily backup window start (UTC)."
    )
    retained_backups: Int = Field(default=14, ge=1, le=365, description="Daily backups kept.")
    log_retention_days: Int = Field(
        default=7,
        ge=1,
        le=35,
        description="Days of WAL kept for point-in-time recovery (Enterprise: at most 7).",
    )
    maintenance_day: Int = Field(
        default=7, ge=1, le=7, description="Maintenance window day (1 = Monday, 7 = Sunday)."
    )
    maintenance_hour: Int = Field(
        default=3, ge=0, le=23, description="Maintenance window hour (UTC)."
    )
    deletion_protection: bool = Field(
        default=True,
        description="Both layers: Pulumi refuses to delete, and so does GCP. prod refuses false.",
    )
    max_connections: Int | None = Field(
        default=None,
        ge=25,
        description="Postgres max_connections flag; unset means the tier's default.",
    )
    reserved_connections: Int = Field(
        default=10,
        ge=3,
        description="Slots the pooler leaves alone: superuser_reserved_connections (3), Cloud "
        "SQL's agents, and a migration or psql session.",
    )
    database_name: str = Field(
        default="app", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="The app's database."
    )
    user_name: str = Field(
        default="app", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="The app's database user."
    )

    @cached_property
    def parsed_tier(self) -> Tier | None:
        return parse_tier(self.tier)

    @property
    def effective_max_connections(self) -> int:
        if self.max_connections is not None:
            return self.max_connections
        assert self.parsed_tier is not None  # checked by CloudSettings
        return self.parsed_tier.default_max_connections


class PgBouncerVmSettings(BaseModel):
    """The PgBouncer VM (pooler.mode pgbouncer); bulwark harden and the PgBouncer deploy set
    it up."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    machine_type: str = Field(
        default="e2-small", description="PgBouncer is single-threaded: a small VM is enough."
    )
    zone_suffix: str = Field(
        default="b", pattern=r"^[a-f]$", description="Zone in the region (`<region>-<suffix>`)."
    )
    image: str = Field(
        default="debian-cloud/debian-12", description="Boot image (what bulwark harden knows)."
    )
    disk_size_gb: Int = Field(default=10, ge=10, le=65536, description="Boot disk.")
    version: str = Field(
        default="1.18",
        pattern=r"^\d+\.\d+$",
        description="PgBouncer version the deploy installs (Debian 12 ships 1.18); decides "
        "whether prepared statements are safe.",
    )
    max_prepared_statements: Int = Field(
        default=0,
        ge=0,
        description="PgBouncer max_prepared_statements (needs >= 1.21; 0 turns the support off).",
    )


class PoolerSettings(BaseModel):
    """The transaction pooler between Cloud Run and Postgres."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    mode: Literal["managed", "pgbouncer"] = Field(
        default="managed",
        description="managed: Cloud SQL Enterprise Plus managed connection pooling; pgbouncer: "
        "PgBouncer on a small private VM.",
    )
    max_client_connections: Int = Field(
        default=2000,
        ge=1,
        description="Client connections each pooler accepts; the budget checks the worst case "
        "against it.",
    )
    pool_size: Int | None = Field(
        default=None,
        ge=1,
        description="Server connections per (database, user) pool per pooler; unset: sized from "
        "the budget.",
    )
    pgbouncer: PgBouncerVmSettings = PgBouncerVmSettings()


class CacheSettings(BaseModel):
    """Memorystore for Redis: AUTH, TLS, private service access."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    tier: Literal["STANDARD_HA", "BASIC"] = Field(
        default="STANDARD_HA",
        description="STANDARD_HA keeps a replica in another zone; prod refuses BASIC.",
    )
    memory_size_gb: Int = Field(default=1, ge=1, le=300, description="Redis memory.")
    redis_version: str = Field(
        default="REDIS_7_2", pattern=r"^REDIS_\d+_\d+$", description="Redis version."
    )
    persistence: bool = Field(
        default=True, description="RDB snapshots every 12 hours, so a restart keeps the data."
    )
    maintenance_day: Literal[
        "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"
    ] = Field(default="SUNDAY", description="Weekly maintenance window day.")
    maintenance_hour: Int = Field(
        default=4, ge=0, le=23, description="Maintenance window hour (UTC)."
    )
    deletion_protection: bool = Field(
        default=True, description="Refuse to delete the instance (prod refuses false)."
    )


class ServiceSettings(BaseModel):
    """The Cloud Run v2 service."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    image: str = Field(
        description="Container image, pinned by digest (`REGISTRY/REPO@sha256:<64 hex>`) so "
        "what was reviewed is what runs."
    )
    allow_mutable_image: bool = Field(
        default=False,
        description="Named opt-out: accept a tag instead of a digest (never in prod).",
    )
    max_instances: Int = Field(
        default=10,
        le=1000,
        description="Upper bound on instances: the budget and the bill depend on it.",
    )
    min_instances: Int = Field(default=0, ge=0, description="Instances kept warm.")
    concurrency: Int = Field(
        default=40, ge=1, le=1000, description="Requests one instance serves at once."
    )
    rollout_surge_percent: Int = Field(
        default=100,
        ge=0,
        le=100,
        description="Extra instances a rollout may run while the old revision drains (worst "
        "case: both at max).",
    )
    workers_per_instance: Int = Field(
        default=2, ge=1, le=64, description="Worker processes per instance (WEB_CONCURRENCY)."
    )
    db_pool_size: Int = Field(
        default=5, ge=1, le=100, description="Connection pool per worker (DB_POOL_MAX_SIZE)."
    )
    cpu: str = Field(default="1", pattern=r"^\d+(\.\d+)?$|^\d+m$", description="CPU limit.")
    memory: str = Field(default="512Mi", pattern=r"^\d+(Mi|Gi)$", description="Memory limit.")
    port: Int = Field(default=8080, ge=1, le=65535, description="Port the container listens on.")
    request_timeout_seconds: Int = Field(default=60, ge=1, le=3600, description="Request timeout.")
    startup_probe_path: str = Field(
        default="/healthz", pattern=r"^/", description="HTTP path that answers once started."
    )
    liveness_probe_path: str = Field(
        default="/healthz", pattern=r"^/", description="HTTP path that answers while healthy."
    )
    ingress: Literal[
        "INGRESS_TRAFFIC_INTERNAL_ONLY",
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        "INGRESS_TRAFFIC_ALL",
    ] = Field(
        default="INGRESS_TRAFFIC_INTERNAL_ONLY",
        description="Where requests may come from; not the internet unless chosen.",
    )
    invokers: tuple[str, ...] = Field(
        default=(),
        description="Members granted roles/run.invoker (e.g. serviceAccount:...); allUsers only "
        "with allow_public_invoker.",
    )
    allow_public_invoker: bool = Field(
        default=False, description="Named opt-out: let allUsers/allAuthenticatedUsers invoke."
    )
    libpq_major: Int | None = Field(
        default=None,
        ge=9,
        le=99,
        description="libpq major version in the image, if known; prepared statements through "
        "PgBouncer need >= 17.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Plain environment values (never secrets: those come from Secret Manager).",
    )
    deletion_protection: bool = Field(
        default=True, description="Refuse to delete the service (prod refuses false)."
    )

    @model_validator(mode="after")
    def _checks(self) -> ServiceSettings:
        if self.max_instances < 1:
            raise ValueError(
                f"max_instances: {self.max_instances} would stop the service: set 1 or more "
                "(the connection budget is sized from it)"
            )
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances: {self.min_instances} exceeds max_instances "
                f"{self.max_instances}: lower it"
            )
        if not self.allow_mutable_image and not DIGEST_RE.fullmatch(self.image):
            raise ValueError(
                f"image: {self.image!r} is not pinned by digest: use "
                "REGISTRY/REPO@sha256:<64 hex> (e.g. from `docker buildx imagetools inspect`)"
            )
        for member in self.invokers:
            if member in PUBLIC_MEMBERS and not self.allow_public_invoker:
                raise ValueError(
                    f"invokers: {member} makes the service public: remove it, or set "
                    "allow_public_invoker: true if that is the intent"
                )
            if member not in PUBLIC_MEMBERS and not MEMBER_RE.fullmatch(member):
                raise ValueError(
                    f"invokers: {member!r} is not an IAM member: use e.g. "
                    "serviceAccount:NAME@PROJECT.iam.gserviceaccount.com"
                )
        for name, value in self.env.items():
            if not ENV_NAME_RE.fullmatch(name):
                raise ValueError(
                    f"env: {name!r} is not an environment variable name: use letters, digits "
                    "and '_', not starting with a digit"
                )
            if name in MANAGED_ENV:
                raise ValueError(f"env: {name} is set by the stack: remove it")
            if why := secret_setting(name, value):
                raise ValueError(
                    f"env: {name} looks like a secret ({why}): keep it in Secret Manager, "
                    "not config"
                )
        return self


class CiSettings(BaseModel):
    """Workload Identity Federation for GitHub Actions, and the deployer service account."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    github_repository: str = Field(
        pattern=r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$",
        description="owner/name of the only repository allowed to deploy.",
    )
    github_repository_id: str | None = Field(
        default=None,
        pattern=r"^\d+$",
        description="Numeric repository id: also pins it, so a renamed or re-created repository "
        "with the same name cannot deploy.",
    )
    branch: str = Field(
        default="main", pattern=r"^[A-Za-z0-9._/-]+$", description="The only branch that deploys."
    )


class CloudSettings(BaseModel):
    """One stack: everything `__main__.py` and `bulwark plan` read from the stack config."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    project: str = Field(
        pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$", description="GCP project id (gcp:project)."
    )
    region: str = Field(pattern=r"^[a-z]+-[a-z]+\d+$", description="GCP region (gcp:region).")
    environment: Literal["dev", "staging", "prod"] = Field(
        description="prod turns the recommended choices into requirements."
    )
    name_prefix: str = Field(
        default="bulwark",
        pattern=r"^[a-z][a-z0-9-]{1,11}$",
        description="Prefix of every resource name (with the environment).",
    )
    network: NetworkSettings = NetworkSettings()
    database: DatabaseSettings = DatabaseSettings()
    pooler: PoolerSettings = PoolerSettings()
    cache: CacheSettings = CacheSettings()
    service: ServiceSettings
    ci: CiSettings

    @property
    def name(self) -> str:
        """Base of resource names, e.g. `bulwark-prod`."""
        return f"{self.name_prefix}-{self.environment}"

    @property
    def zone(self) -> str:
        return f"{self.region}-{self.pooler.pgbouncer.zone_suffix}"

    @property
    def poolers(self) -> int:
        tier = self.database.parsed_tier
        if self.pooler.mode == "managed" and tier is not None:
            return tier.managed_poolers
        return 1

    @property
    def pool_size(self) -> int:
        if self.pooler.pool_size is not None:
            return self.pooler.pool_size
        return size_pools(self._clients, self.poolers, 1, self._postgres)

    @property
    def _clients(self) -> Clients:
        s = self.service
        return Clients(
            s.max_instances, s.rollout_surge_percent, s.workers_per_instance, s.db_pool_size
        )

    @property
    def _postgres(self) -> Postgres:
        db = self.database
        return Postgres(db.effective_max_connections, db.reserved_connections)

    @property
    def budget(self) -> Budget:
        """The connection budget of this stack (one pool: the app's database and user)."""
        pooler = Pooler(self.poolers, self.pooler.max_client_connections, 1, self.pool_size)
        return Budget(self._clients, pooler, self._postgres)

    @model_validator(mode="after")
    def _checks(self) -> CloudSettings:
        db, pooler = self.database, self.pooler
        tier = db.parsed_tier
        if tier is None and db.max_connections is None:
            raise ValueError(
                f"database.tier: {db.tier!r} is not a tier bulwark can size: use "
                "db-perf-optimized-N-<vCPUs> or db-custom-<vCPUs>-<MiB>, or set "
                "database.max_connections"
            )
        perf = db.tier.startswith("db-perf-optimized-")
        if db.edition == "ENTERPRISE_PLUS" and not perf:
            raise ValueError(
                f"database.tier: {db.tier} is not an Enterprise Plus tier: use "
                "db-perf-optimized-N-<vCPUs>, or set database.edition: ENTERPRISE"
            )
        if db.edition == "ENTERPRISE" and perf:
            raise ValueError(f"database.tier: {db.tier} needs database.edition: ENTERPRISE_PLUS")
        if db.edition == "ENTERPRISE" and db.log_retention_days > 7:
            raise ValueError(
                f"database.log_retention_days: {db.log_retention_days} exceeds Enterprise "
                "edition's 7 days of point-in-time recovery: lower it, or use ENTERPRISE_PLUS"
            )
        if pooler.mode == "managed" and db.edition != "ENTERPRISE_PLUS":
            raise ValueError(
                "pooler.mode: managed connection pooling needs database.edition: "
                "ENTERPRISE_PLUS; set it, or use pooler.mode: pgbouncer"
            )
        if db.reserved_connections >= db.effective_max_connections:
            raise ValueError(
                f"database.reserved_connections: {db.reserved_connections} leaves nothing of "
                f"max_connections {db.effective_max_connections}: lower it"
            )
        self._check_subnet()
        if self.environment == "prod":
            self._check_prod()
        self._check_budget()
        return self

    def _check_subnet(self) -> None:
        subnet = ipaddress.ip_network(self.network.subnet_cidr)
        usable = subnet.num_addresses - 4  # GCP keeps four addresses of every subnet
        needed = 2 * self._clients.instances
        if subnet.prefixlen > 26 or usable < needed:
            raise ValueError(
                f"network.subnet_cidr: {subnet} has {usable} usable addresses; Direct VPC "
                f"egress needs a /26 or larger and about 2 per instance ({needed} for "
                f"{self._clients.instances} instances with rollout surge): use a larger range"
            )

    def _check_prod(self) -> None:
        if self.database.availability != "REGIONAL":
            raise ValueError(
                "database.availability: prod needs REGIONAL (a standby in another zone): "
                "remove the ZONAL override"
            )
        if not self.database.deletion_protection:
            raise ValueError("database.deletion_protection: prod keeps it on: remove the override")
        if not self.cache.deletion_protection:
            raise ValueError("cache.deletion_protection: prod keeps it on: remove the override")
        if self.cache.tier != "STANDARD_HA":
            raise ValueError(
                "cache.tier: prod needs STANDARD_HA (a replica in another zone): remove the "
                "BASIC override"
            )
        if self.service.allow_mutable_image:
            raise ValueError(
                "service.allow_mutable_image: prod runs images pinned by digest only: remove it "
                "and set service.image to REGISTRY/REPO@sha256:<64 hex>"
            )
        if not self.service.deletion_protection:
            raise ValueError("service.deletion_protection: prod keeps it on: remove the override")

    def _check_budget(self) -> None:
        if self.pool_size < 1:
            raise ValueError(
                f"database.tier: {self._postgres.usable} usable connections cannot give each of "
                f"{self.poolers} pooler(s) a server pool: pick a larger tier or lower "
                "database.reserved_connections"
            )
        for shortfall in self.budget.shortfalls:
            if shortfall.side == "clients":
                raise ValueError(
                    f"pooler.max_client_connections: {shortfall.detail}: raise "
                    "pooler.max_client_connections, or lower service.max_instances, "
                    "workers_per_instance or db_pool_size"
                )
            raise ValueError(
                f"pooler.pool_size: {shortfall.detail}: lower pooler.pool_size (or unset it to "
                "size it from the budget), or pick a larger database.tier"
            )


# ----------------------------------------------------------------------------- loading


def cloud_settings(data: Mapping[str, object], where: str = "stack") -> CloudSettings:
    """Validate stack config (keys without the `bulwark:`/`gcp:` prefix) into CloudSettings.

    The error is one line: `where: bulwark:area.field: what is wrong: the fix`.
    """
    try:
        return CloudSettings.model_validate(dict(data))
    except ValidationError as exc:
        raise one_line(exc, where, spell=_config_key, missing="set it in the stack file") from None


def _config_key(loc: tuple[int | str, ...]) -> str:
    """The stack-file spelling of a field: gcp:project, bulwark:service.max_instances."""
    if not loc:
        return ""
    head, *rest = (str(p) for p in loc)
    namespace = "gcp" if head in {"project", "region"} else "bulwark"
    return f"{namespace}:{'.'.join([head, *rest])}"


STACK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def stack_file(stack: str, stacks_dir: Path = Path("stacks")) -> Path:
    """The stack's file; the name is a Pulumi stack name, never a path."""
    if not STACK_NAME_RE.fullmatch(stack) or ".." in stack:
        raise ConfigError(
            f"--stack {stack!r} is not a stack name: use letters, digits, '-', '_' or '.' "
            "(dev, staging, prod)"
        )
    return stacks_dir / f"Pulumi.{stack}.yaml"


def read_stack_config(path: Path) -> dict[str, object]:
    """The `config:` map of a stack file, keys as Pulumi writes them (`bulwark:service`).

    Values are what `pulumi config` would hand the program. Encrypted (`secure:`) values are
    refused: this stack keeps no secrets in config.
    """
    try:
        doc = read_yaml(path) or {}
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such stack file: create it (see stacks/README.md) or pick another --stack"
        ) from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: no `config:` map: add one (see stacks/README.md)")
    for key, value in config.items():
        if isinstance(value, dict) and "secure" in value:
            raise ConfigError(
                f"{path}: {key}: encrypted config is not used by this stack: secrets are "
                "generated and kept in Secret Manager; remove it"
            )
    return {str(k): v for k, v in config.items()}


def settings_data(config: Mapping[str, object], where: str) -> dict[str, object]:
    """Turn Pulumi config keys (`gcp:project`, `bulwark:service`) into CloudSettings fields."""
    data: dict[str, object] = {}
    for key, value in config.items():
        namespace, _, name = key.partition(":")
        if namespace == "gcp" and name in {"project", "region"}:
            data[name] = value
        elif namespace == "bulwark":
            if name in data:
                raise ConfigError(f"{where}: {key}: set twice: keep one")
            data[name] = value
    return data
