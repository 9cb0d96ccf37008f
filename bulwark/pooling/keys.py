"""The keys under which the cloud components stamp the budget's inputs and the pooler's settings
on the resources, so that the offline audit and the CrossGuard pack read the same facts from the
resources alone (no settings patched into the policy config, no default held twice)."""

from __future__ import annotations

# Metadata on the PgBouncer VM: the pool settings pyinfra writes there, visible at preview time.
PGBOUNCER_POOL_MODE = "bulwark-pgbouncer-pool-mode"
PGBOUNCER_MAX_CLIENT_CONN = "bulwark-pgbouncer-max-client-conn"
PGBOUNCER_POOL_SIZE = "bulwark-pgbouncer-default-pool-size"
PGBOUNCER_PREPARED = "bulwark-pgbouncer-max-prepared-statements"
PGBOUNCER_VERSION = "bulwark-pgbouncer-version"

# Labels on the Cloud Run service: the image's libpq major, and the rollout surge (percent of
# max instances a rollout may add while the old revision drains). Workers and the per-process
# pool are the service's WEB_CONCURRENCY and DB_POOL_MAX_SIZE environment values.
LIBPQ_LABEL = "bulwark-libpq-major"
SURGE_LABEL = "bulwark-rollout-surge-percent"
WORKERS_ENV = "WEB_CONCURRENCY"
POOL_ENV = "DB_POOL_MAX_SIZE"

# Label on the Cloud SQL instance (settings.userLabels): connection slots the pooler leaves
# alone (superuser_reserved_connections, Cloud SQL's agents, a migration or psql session).
RESERVED_LABEL = "bulwark-reserved-connections"
