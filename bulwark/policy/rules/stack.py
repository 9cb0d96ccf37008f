"""Stack rules: properties of several resources together (the pooler, the connection budget,
the runtime identity, the driver settings)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bulwark.policy.rules.base import RULES, Finding, NotApplicable, Resource, flag_value
from bulwark.policy.rules.types import (
    COMPUTE_INSTANCE,
    PROJECT_IAM_BINDING,
    PROJECT_IAM_MEMBER,
    RUN_SERVICE,
    SA_ACCOUNT,
    SQL_INSTANCE,
)
from bulwark.policy.rules.values import integer
from bulwark.pooling.budget import Budget, Clients, Pooler, Postgres, parse_tier
from bulwark.pooling.driver import prepare_blockers
from bulwark.pooling.keys import (
    LIBPQ_LABEL,
    PGBOUNCER_MAX_CLIENT_CONN,
    PGBOUNCER_POOL_MODE,
    PGBOUNCER_POOL_SIZE,
    PGBOUNCER_PREPARED,
    PGBOUNCER_VERSION,
    POOL_ENV,
    RESERVED_LABEL,
    SURGE_LABEL,
    WORKERS_ENV,
)

RUNTIME_ROLE_PREFIXES = (
    "roles/cloudsql.client",
    "roles/cloudsql.instanceUser",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/cloudtrace.agent",
    "roles/secretmanager.secretAccessor",
)


def _of(resources: Sequence[Resource], type_token: str) -> list[Resource]:
    return [r for r in resources if r.type == type_token]


def _pool_flags(sql: Resource) -> dict[str, str] | None:
    for config in sql.items("settings.connectionPoolConfigs"):
        if isinstance(config, Mapping) and config.get("connectionPoolingEnabled") is True:
            return {
                str(f.get("name")): str(f.get("value"))
                for f in config.get("flags") or ()
                if isinstance(f, Mapping)
            }
    return None


def _pgbouncers(resources: Sequence[Resource]) -> list[Resource]:
    return [r for r in _of(resources, COMPUTE_INSTANCE) if r.get(f"metadata.{PGBOUNCER_POOL_MODE}")]


def _env(service: Resource, name: str) -> str | None:
    for container in service.items("template.containers"):
        for env in container.get("envs") or [] if isinstance(container, Mapping) else []:
            if isinstance(env, Mapping) and env.get("name") == name:
                value = env.get("value")
                return None if value is None else str(value)
    return None


_int = integer  # config and metadata numbers arrive as int, float or text


@RULES.stack(
    "pooler-transaction-mode",
    title="Postgres is reached through a transaction-mode pooler",
    severity="high",
    family="database",
    rationale="Cloud Run scales to many instances each holding a pool; without a transaction "
    "pooler their connections exhaust Postgres' max_connections during a rollout.",
    remediation="Use managed connection pooling with pool_mode=transaction "
    "(bulwark:pooler.mode: managed) or the PgBouncer VM (bulwark:pooler.mode: pgbouncer).",
)
def pooler_transaction_mode(
    resources: Sequence[Resource], config: Mapping[str, object]
) -> Sequence[Finding] | NotApplicable:
    sqls = _of(resources, SQL_INSTANCE)
    if not sqls:
        return NotApplicable("no Cloud SQL instance in the stack")
    found: list[Finding] = []
    bouncers = _pgbouncers(resources)
    for sql in sqls:
        flags = _pool_flags(sql)
        if flags is not None:
            mode = flags.get("pool_mode") or "unset"
            if mode != "transaction":
                found.append(
                    Finding(
                        f"managed pooling on {sql.name} has pool_mode {mode}: set "
                        "pool_mode=transaction",
                        sql.urn,
                    )
                )
        elif not bouncers:
            found.append(
                Finding(
                    f"{sql.name} has no managed pooling and the stack no PgBouncer VM: set "
                    "bulwark:pooler.mode",
                    sql.urn,
                )
            )
    for vm in bouncers:
        mode = vm.get(f"metadata.{PGBOUNCER_POOL_MODE}")
        if mode != "transaction":
            found.append(
                Finding(f"PgBouncer VM {vm.name} runs pool_mode {mode}: use transaction", vm.urn)
            )
    return found


def stack_budget(resources: Sequence[Resource]) -> Budget | str:
    """The connection budget as the resources declare it (every input is stamped on them), or
    why it cannot be computed."""
    services, sqls = _of(resources, RUN_SERVICE), _of(resources, SQL_INSTANCE)
    if len(services) != 1 or len(sqls) != 1:
        return f"{len(services)} Cloud Run service(s) and {len(sqls)} Cloud SQL instance(s)"
    service, sql = services[0], sqls[0]
    clients = _clients(service)
    reserved = _int(sql.labels.get(RESERVED_LABEL))
    if isinstance(clients, str) or reserved is None:
        return (
            clients
            if isinstance(clients, str)
            else (
                f"{sql.name} does not state its reserved connections (label {RESERVED_LABEL}): "
                "bulwark's database component stamps it"
            )
        )
    tier = parse_tier(str(sql.get("settings.tier") or ""))
    max_conn = _int(flag_value(sql, "max_connections") or "")
    if max_conn is None and tier is None:
        return f"tier {sql.get('settings.tier')} is unknown and max_connections unset"
    if max_conn is None and tier is not None:
        max_conn = tier.default_max_connections
    pooler = _pooler(resources, sql, tier.managed_poolers if tier is not None else 1)
    if isinstance(pooler, str):
        return pooler
    return Budget(clients, pooler, Postgres(max_conn or 0, reserved))


def _clients(service: Resource) -> Clients | str:
    """The client side: max instances, the surge label, workers and the per-process pool."""
    most = _int(service.get("template.scaling.maxInstanceCount"))
    workers = _int(_env(service, WORKERS_ENV) or 1)
    pool = _int(_env(service, POOL_ENV))
    surge = _int(service.labels.get(SURGE_LABEL))
    if most is None or workers is None or pool is None or surge is None:
        return (
            f"{service.name} lacks maxInstanceCount, {WORKERS_ENV}, {POOL_ENV} or the label "
            f"{SURGE_LABEL}: declare them (bulwark's service component does) so the budget can "
            "be checked"
        )
    return Clients(most, surge, workers, pool)


def _pooler(resources: Sequence[Resource], sql: Resource, managed: int) -> Pooler | str:
    """Managed pooling's flags on the instance (`managed` poolers), or the PgBouncer VM's."""
    flags = _pool_flags(sql)
    bouncers = _pgbouncers(resources)
    if flags is not None:
        poolers = managed
        client_limit = _int(flags.get("max_client_connections"))
        size = _int(flags.get("max_pool_size"))
    elif len(bouncers) == 1:
        poolers = 1
        client_limit = _int(bouncers[0].get(f"metadata.{PGBOUNCER_MAX_CLIENT_CONN}"))
        size = _int(bouncers[0].get(f"metadata.{PGBOUNCER_POOL_SIZE}"))
    else:
        return "no pooler to size (see pooler-transaction-mode)"
    if client_limit is None or size is None:
        return "the pooler does not declare max_client_connections and its pool size"
    return Pooler(poolers, client_limit, 1, size)


@RULES.stack(
    "connection-budget-fits",
    title="The worst-case connection count fits the pooler and Postgres",
    severity="critical",
    family="database",
    rationale="During a rollout both revisions run at max instances; if their pools exceed the "
    "pooler's client limit, or the pooler's server pools exceed Postgres' usable "
    "max_connections, new connections fail exactly when traffic shifts.",
    remediation="Raise bulwark:pooler.max_client_connections or the database tier, or lower "
    "service.max_instances, workers_per_instance or db_pool_size (see `bulwark plan`).",
)
def connection_budget_fits(
    resources: Sequence[Resource], config: Mapping[str, object]
) -> Sequence[Finding] | NotApplicable:
    """Every input comes from the resources: scaling and env of the service, the labels the
    components stamp (rollout surge, reserved slots), the tier, flags and pooler settings."""
    if not _of(resources, SQL_INSTANCE):
        return NotApplicable("no Cloud SQL instance in the stack")
    budget = stack_budget(resources)
    if isinstance(budget, str):
        return [Finding(f"cannot compute the connection budget: {budget}")]
    return [
        Finding(f"{shortfall.detail}: raise the limit or lower the client side")
        for shortfall in budget.shortfalls
    ]


def _runtime_accounts(resources: Sequence[Resource]) -> dict[str, Resource]:
    return {
        str(s.get("template.serviceAccount")): s
        for s in _of(resources, RUN_SERVICE)
        if s.get("template.serviceAccount")
    }


@RULES.stack(
    "runtime-sa-dedicated",
    title="The Cloud Run runtime account is created by the stack and used by nothing else",
    severity="high",
    family="iam",
    rationale="A shared account widens what a compromised app can reach and makes its grants "
    "impossible to review on their own.",
    remediation="Create a gcp.serviceaccount.Account for the service and give no other "
    "workload (VM, CI) that account.",
)
def runtime_sa_dedicated(
    resources: Sequence[Resource], config: Mapping[str, object]
) -> Sequence[Finding] | NotApplicable:
    runtime = _runtime_accounts(resources)
    if not runtime:
        return NotApplicable("no Cloud Run service with a service account")
    created = {str(a.get("accountId")) for a in _of(resources, SA_ACCOUNT)}
    found = []
    for email, service in runtime.items():
        if email.split("@")[0] not in created:
            found.append(
                Finding(
                    f"{service.name} runs as {email}, which the stack does not create: create a "
                    "dedicated account",
                    service.urn,
                )
            )
        for vm in _of(resources, COMPUTE_INSTANCE):
            if vm.get("serviceAccount.email") == email:
                found.append(
                    Finding(
                        f"VM {vm.name} shares {service.name}'s account {email}: give it its own",
                        vm.urn,
                    )
                )
    return found


@RULES.stack(
    "runtime-sa-least-privilege",
    title="The Cloud Run runtime account holds no project-wide admin role",
    severity="high",
    family="iam",
    rationale="The app's account is what an attacker gets from an app bug; it needs to read "
    "its secrets and write logs, not administer the project.",
    remediation="Remove project-level grants to the runtime account beyond client, logging and "
    "monitoring roles; grant secret access per secret.",
    cis="1.5",
)
def runtime_sa_least_privilege(
    resources: Sequence[Resource], config: Mapping[str, object]
) -> Sequence[Finding] | NotApplicable:
    runtime = _runtime_accounts(resources)
    if not runtime:
        return NotApplicable("no Cloud Run service with a service account")
    members = {f"serviceAccount:{email}" for email in runtime}
    found = []
    for grant in _of(resources, PROJECT_IAM_MEMBER) + _of(resources, PROJECT_IAM_BINDING):
        granted = {grant.get("member"), *grant.items("members")} & members
        role = str(grant.get("role") or "")
        if granted and not role.startswith(RUNTIME_ROLE_PREFIXES):
            found.append(
                Finding(
                    f"{', '.join(sorted(str(m) for m in granted))} holds {role} on the project: "
                    "remove it (the app needs client, logging and per-secret roles only)",
                    grant.urn,
                )
            )
    return found


@RULES.stack(
    "driver-prepared-statements-safe",
    title="The app's driver does not prepare statements through a pooler that loses them",
    severity="high",
    family="database",
    rationale="Under transaction pooling psycopg's automatic prepares fail with `prepared "
    'statement "_pg3_0" does not exist`; aborted transactions pile up and the pool starves.',
    remediation="Set DB_PREPARE_THRESHOLD=none (the stack does) unless PgBouncer >= 1.22 runs "
    "with max_prepared_statements > 0 and the app's libpq is >= 17.",
)
def driver_prepared_statements_safe(
    resources: Sequence[Resource], config: Mapping[str, object]
) -> Sequence[Finding] | NotApplicable:
    services = _of(resources, RUN_SERVICE)
    if not services or not _of(resources, SQL_INSTANCE):
        return NotApplicable("no Cloud Run service talking to Cloud SQL")
    found = []
    for service in services:
        value = _env(service, "DB_PREPARE_THRESHOLD")
        if value == "none":
            continue
        libpq = _int(service.get(f"labels.{LIBPQ_LABEL}"))
        blockers = [
            prepare_blockers(
                str(vm.get(f"metadata.{PGBOUNCER_VERSION}") or "") or None,
                _int(vm.get(f"metadata.{PGBOUNCER_PREPARED}")),
                libpq,
            )
            for vm in _pgbouncers(resources)
        ] or [["managed pooling keeps no prepared statements"]]
        if all(blockers):
            shown = value or "unset (psycopg prepares)"
            found.append(
                Finding(
                    f"{service.name} has DB_PREPARE_THRESHOLD={shown}, but "
                    f"{', '.join(blockers[0])}: set it to none",
                    service.urn,
                )
            )
    return found
