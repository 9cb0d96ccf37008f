"""Stack fixtures: a compliant set of resources (managed pooling, or PgBouncer) and, for every
stack rule, the change that violates it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bulwark.policy.rules import Resource
from bulwark.policy.rules import types as t
from bulwark.pooling.keys import (
    LIBPQ_LABEL,
    PGBOUNCER_MAX_CLIENT_CONN,
    PGBOUNCER_POOL_MODE,
    PGBOUNCER_POOL_SIZE,
    PGBOUNCER_PREPARED,
    PGBOUNCER_VERSION,
)

from .fixtures import DELETE, SA, resource


def managed_stack(
    sql: dict[str, Any] | None = None, run: dict[str, Any] | None = None
) -> list[Resource]:
    """prod's shape: 8 vCPUs (2 poolers x 2000 clients), 800 max_connections, 395 per pool."""
    return [
        resource(t.SQL_INSTANCE, sql, name="database-instance"),
        resource(t.RUN_SERVICE, run, name="service-service"),
        Resource(t.SA_ACCOUNT, "service-sa", "urn:sa", {"accountId": SA.split("@")[0]}),
    ]


def pgbouncer_stack(
    vm: dict[str, Any] | None = None, run: dict[str, Any] | None = None
) -> list[Resource]:
    """dev's shape: ENTERPRISE db-custom-1-3840 (100 connections) behind a PgBouncer VM."""
    meta = {
        f"metadata.{PGBOUNCER_POOL_MODE}": "transaction",
        f"metadata.{PGBOUNCER_MAX_CLIENT_CONN}": "200",
        f"metadata.{PGBOUNCER_POOL_SIZE}": "60",
        f"metadata.{PGBOUNCER_PREPARED}": "0",
    }
    return [
        resource(t.SQL_INSTANCE, {"settings.connectionPoolConfigs": DELETE,
                                  "settings.tier": "db-custom-1-3840"}, name="database-instance"),
        resource(t.RUN_SERVICE, {"template.scaling.maxInstanceCount": 3, **(run or {})},
                 name="service-service"),
        Resource(t.SA_ACCOUNT, "service-sa", "urn:sa", {"accountId": SA.split("@")[0]}),
        resource(t.COMPUTE_INSTANCE, {**meta, **(vm or {})}, name="pooler-vm"),
    ]  # fmt: skip


def _env(index: int, name: str, value: str) -> dict[str, Any]:
    return {f"template.containers.0.envs.{index}": {"name": name, "value": value}}


def _with(stack: Callable[[], list[Resource]], extra: Resource) -> Callable[[], list[Resource]]:
    return lambda: [*stack(), extra]


def prepared_statements_stack(libpq: str = "17", version: str = "1.24.1") -> list[Resource]:
    """PgBouncer that tracks prepared statements, and an app that lets psycopg prepare."""
    return pgbouncer_stack(
        vm={f"metadata.{PGBOUNCER_PREPARED}": "200", f"metadata.{PGBOUNCER_VERSION}": version},
        run={**_env(2, "DB_PREPARE_THRESHOLD", "5"), f"labels.{LIBPQ_LABEL}": libpq},
    )


PREVIEW_CONDITION = (
    "assertion.repository == 'acme/platform' && assertion.event_name == "
    "'pull_request' && assertion.base_ref == 'main' && "
    "assertion.repository_id == '812345678'"
)
READER = "serviceAccount:bulwark-prod-reader@acme-bulwark-prod.iam.gserviceaccount.com"


def _child(type_token: str, name: str, props: dict[str, Any]) -> Resource:
    return Resource(
        type_token,
        name,
        f"urn:pulumi:prod::bulwark::bulwark:ci:GithubReader${type_token}::{name}",
        props,
    )


def preview_stack(*grants: tuple[str, str]) -> list[Resource]:
    """managed_stack with the pull-request previewer: its provider, and (type, role) grants."""
    return [
        *managed_stack(),
        _child(t.WIF_PROVIDER, "ci-reader-provider", {"attributeCondition": PREVIEW_CONDITION}),
        _child(
            t.SA_IAM_MEMBER,
            "ci-reader-wif-user",
            {"role": "roles/iam.workloadIdentityUser", "member": "principalSet://x"},
        ),
        *(
            _child(typ, f"ci-reader-{i}", {"role": role, "member": READER})
            for i, (typ, role) in enumerate(grants)
        ),
    ]


def reader_stack() -> list[Resource]:
    """What the stack builds: service viewer roles and the security reviewer, nothing more;
    a grant outside the reader component is not the reader's."""
    return [
        *preview_stack(
            (t.PROJECT_IAM_MEMBER, "roles/compute.viewer"),
            (t.PROJECT_IAM_MEMBER, "roles/serviceusage.serviceUsageViewer"),
            (t.PROJECT_IAM_MEMBER, "roles/iam.securityReviewer"),
        ),
        resource(t.PROJECT_IAM_MEMBER, {"role": "roles/run.admin"}, name="deployer-run-admin"),
    ]


STACK_GOOD: list[Callable[[], list[Resource]]] = [
    managed_stack, pgbouncer_stack, prepared_statements_stack, reader_stack,
]  # fmt: skip

STACK_VIOLATIONS: dict[str, list[Callable[[], list[Resource]]]] = {
    "pooler-transaction-mode": [
        lambda: managed_stack(sql={"settings.connectionPoolConfigs.0.flags.0":
                                   {"name": "pool_mode", "value": "session"}}),
        lambda: managed_stack(sql={"settings.connectionPoolConfigs": DELETE}),
        lambda: pgbouncer_stack(vm={f"metadata.{PGBOUNCER_POOL_MODE}": "session"}),
    ],
    "connection-budget-fits": [
        # 100 instances x 2 (surge) x 2 workers x 5 = 2000 > 2 x 500 clients
        lambda: managed_stack(sql={"settings.connectionPoolConfigs.0.flags.2":
                                   {"name": "max_client_connections", "value": "500"}},
                              run={"template.scaling.maxInstanceCount": 100}),
        # 2 poolers x 450 server connections > 790 usable
        lambda: managed_stack(sql={"settings.connectionPoolConfigs.0.flags.1":
                                   {"name": "max_pool_size", "value": "450"}}),
        lambda: pgbouncer_stack(vm={f"metadata.{PGBOUNCER_POOL_SIZE}": "95"}),
    ],
    "runtime-sa-dedicated": [
        lambda: managed_stack()[:2],
        lambda: pgbouncer_stack(vm={"serviceAccount.email": SA}),
    ],
    "runtime-sa-least-privilege": [
        _with(managed_stack, Resource(t.PROJECT_IAM_MEMBER, "grant", "urn:grant",
                                      {"role": "roles/cloudsql.admin",
                                       "member": f"serviceAccount:{SA}"})),
    ],
    "driver-prepared-statements-safe": [
        lambda: managed_stack(run=_env(2, "DB_PREPARE_THRESHOLD", "5")),
        # unset: psycopg prepares after 5 executions, and PgBouncer 1.18 does not track them
        lambda: pgbouncer_stack(run=_env(2, "UNRELATED", "1")),
        # PgBouncer tracks them, but libpq 16 deallocates with SQL the pooler misroutes...
        lambda: prepared_statements_stack(libpq="16"),
        # ... and 1.21 tracks them but is older than psycopg supports.
        lambda: prepared_statements_stack(version="1.21.0"),
    ],
    "wif-pull-requests-read-only": [
        lambda: preview_stack((t.PROJECT_IAM_MEMBER, "roles/run.admin")),
        lambda: preview_stack((t.PROJECT_IAM_MEMBER, "roles/viewer")),  # basic: every service
        lambda: preview_stack((t.PROJECT_IAM_BINDING, "roles/cloudkms.cryptoKeyDecrypter")),
        lambda: preview_stack((t.SA_IAM_MEMBER, "roles/iam.serviceAccountUser")),
    ],
}  # fmt: skip
