"""The Pulumi program: typed settings in, components declared, outputs out.

`__main__.py` (under `pulumi up`) and `bulwark plan` (under mocks) run exactly this.
"""

from __future__ import annotations

import pulumi
from pulumi.runtime import config as runtime_config

from bulwark.cloud.cache import RedisArgs, RedisCache
from bulwark.cloud.ci import GithubDeployer, GithubDeployerArgs, GithubReader, GithubReaderArgs
from bulwark.cloud.database import PostgresArgs, PostgresDatabase
from bulwark.cloud.network import Network, NetworkArgs
from bulwark.cloud.pooler import VM_ROLES, PoolerArgs, TransactionPooler, managed_pool_flags
from bulwark.cloud.project import ProjectApis
from bulwark.cloud.service import CloudRunArgs, CloudRunService
from bulwark.errors import ConfigError
from bulwark.pooling.driver import driver_settings
from bulwark.settings.cloud import AREAS, CloudSettings, cloud_settings

# Stack outputs whose values are secret; plan and tests check they are marked so.
SECRET_OUTPUTS = ("database_url",)


def settings_from_config(where: str = "stack config") -> CloudSettings:
    """Read the stack's config through Pulumi (what `pulumi up` hands the program)."""
    gcp_config, config = pulumi.Config("gcp"), pulumi.Config("bulwark")
    known = {"environment", "name_prefix", *AREAS}
    for key in _config_keys():
        namespace, _, name = key.partition(":")
        if namespace == "bulwark" and name not in known:
            raise ConfigError(f"{where}: {key}: unknown setting: remove it or fix its spelling")
    data: dict[str, object] = {
        "project": gcp_config.get("project"),
        "region": gcp_config.get("region"),
        "environment": config.get("environment"),
        "name_prefix": config.get("name_prefix"),
    }
    for area in AREAS:
        try:
            data[area] = config.get_object(area)
        except pulumi.ConfigTypeError:
            raise ConfigError(
                f"{where}: bulwark:{area}: not a map of settings: indent its keys under it "
                "(see stacks/README.md)"
            ) from None
    return cloud_settings({k: v for k, v in data.items() if v is not None}, where)


def _config_keys() -> set[str]:
    """Every config key the engine handed the program (Pulumi has no public listing)."""
    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


def build(settings: CloudSettings) -> dict[str, pulumi.Input[object]]:
    """Declare every component of one stack; return the stack outputs."""
    s, base = settings, settings.name
    labels = {"app": s.name_prefix, "env": s.environment, "managed-by": "pulumi"}
    apis = ProjectApis("apis", project=s.project)
    after_apis = pulumi.ResourceOptions(depends_on=[apis])

    network = Network(
        "network",
        NetworkArgs(
            project=s.project,
            region=s.region,
            base_name=base,
            subnet_cidr=s.network.subnet_cidr,
            services_range_prefix=s.network.services_range_prefix,
            flow_logs=s.network.flow_logs,
        ),
        opts=after_apis,
    )
    pool_size = s.pool_size
    database = PostgresDatabase(
        "database",
        PostgresArgs(
            project=s.project,
            region=s.region,
            base_name=base,
            settings=s.database,
            network_id=network.vpc.id,
            services_range=network.services_range.name,
            peering=network.peering,
            pool_flags=managed_pool_flags(s.pooler, pool_size)
            if s.pooler.mode == "managed"
            else (),
            labels=labels,
        ),
        opts=after_apis,
    )
    driver = driver_settings(
        s.pooler.mode,
        s.pooler.pgbouncer.version,
        s.pooler.pgbouncer.max_prepared_statements,
        s.service.libpq_major,
    )
    pooler = TransactionPooler(
        "pooler",
        PoolerArgs(
            project=s.project,
            region=s.region,
            zone=s.zone,
            base_name=base,
            settings=s.pooler,
            pool_size=pool_size,
            budget=s.budget,
            database=database,
            driver=driver,
            network_id=network.vpc.id,
            client_cidr=s.network.subnet_cidr,
            pooler_cidr=s.network.pooler_subnet_cidr,
            flow_logs=s.network.flow_logs,
            labels=labels,
        ),
        opts=after_apis,
    )
    cache = RedisCache(
        "cache",
        RedisArgs(
            project=s.project,
            region=s.region,
            base_name=base,
            settings=s.cache,
            network_id=network.vpc.id,
            services_range=network.services_range.name,
            peering=network.peering,
            deletion_protection=s.cache.deletion_protection,
            labels=labels,
        ),
        opts=after_apis,
    )
    service = CloudRunService(
        "service",
        CloudRunArgs(
            project=s.project,
            region=s.region,
            base_name=base,
            settings=s.service,
            network_id=network.vpc.id,
            subnet_id=network.subnet.id,
            secrets={"DATABASE_URL": pooler.dsn_secret, "REDIS_AUTH": cache.auth_secret},
            env={
                "DB_PREPARE_THRESHOLD": driver.env_value,
                "REDIS_HOST": cache.host,
                "REDIS_PORT": cache.port.apply(str),
                # Public CA of the Redis TLS endpoint, so clients verify the server.
                "REDIS_CA_CERT": cache.server_ca.apply(lambda cert: cert or ""),
            },
            labels=labels,
        ),
        opts=after_apis,
    )
    acts_as = [service.account.name]
    grants: tuple[str, ...] = ()
    if s.pooler.mode == "pgbouncer":
        acts_as.append(pooler.account.name)
        grants = VM_ROLES
    ci = GithubDeployer(
        "ci",
        GithubDeployerArgs(
            project=s.project, base_name=base, settings=s.ci, acts_as=acts_as, grants=grants
        ),
        opts=after_apis,
    )
    reader = GithubReader(
        "ci-reader",
        GithubReaderArgs(project=s.project, base_name=base, settings=s.ci),
        opts=after_apis,
    )

    outputs: dict[str, pulumi.Input[object]] = {
        "environment": s.environment,
        "network": network.vpc.name,
        "database_instance": database.instance.name,
        "database_connection_name": database.connection_name,
        "database_private_ip": database.private_ip,
        "database_password_secret": database.password_secret.secret_id,
        "pooler_mode": s.pooler.mode,
        "pooler_host": pooler.host,
        "pooler_port": pooler.port,
        "database_url": pooler.dsn,
        "database_url_secret": pooler.dsn_secret.secret_id,
        "driver_settings": driver.as_dict(),
        "connection_budget": s.budget.as_dict(),
        "redis_host": cache.host,
        "redis_port": cache.port,
        "redis_auth_secret": cache.auth_secret.secret_id,
        "redis_server_ca": cache.server_ca,
        "service_url": service.uri,
        "service_account": service.account.email,
        "ci_workload_identity_provider": ci.provider_name,
        "ci_service_account": ci.service_account,
        "ci_reader_workload_identity_provider": reader.provider_name,
        "ci_reader_service_account": reader.service_account,
    }
    if pooler.inventory is not None:
        outputs["pgbouncer_inventory"] = pooler.inventory
    return outputs
