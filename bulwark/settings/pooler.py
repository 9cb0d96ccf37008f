"""PgBouncer on a host (the `bulwark.pgbouncer` key of host data): every setting declared once,
with its default and reason. Pool sizes come from bulwark/pooling/budget.py when not given."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bulwark.pooling.budget import Budget, Clients, Pooler, Postgres, size_pools
from bulwark.settings.endpoints import HostName, SafePath
from bulwark.settings.load import Int
from bulwark.settings.net import check_address_text, ufw_source


class PoolerDatabase(BaseModel):
    """One database PgBouncer pools connections to."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="Database name.")
    # Validated like every host name: it is written into pgbouncer.ini.
    host: HostName = Field(
        default="127.0.0.1", description="Postgres host, as PgBouncer reaches it."
    )
    port: Int = Field(default=5432, ge=1, le=65535, description="Postgres port.")
    user: str = Field(
        pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="The role the app connects as."
    )
    password_file: SafePath = Field(
        description="File on the controller holding the role's password (never in the repo), "
        "one line of printable ASCII (Postgres normalises other text before hashing it); its "
        "SCRAM verifier is what reaches the host."
    )
    password_secret: str | None = Field(
        default=None,
        description="Where the password lives (a Secret Manager secret id, as the cloud stack "
        "exports it): named in the error when password_file is missing.",
    )

    @property
    def over_network(self) -> bool:
        """Whether PgBouncer reaches this Postgres over the network (not loopback)."""
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host != "localhost"


class PgbouncerSettings(BaseModel):
    """PgBouncer in transaction mode, listening on the private address only."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    listen_address: str = Field(
        description="The host's private address PgBouncer listens on (never 0.0.0.0)."
    )
    port: Int = Field(default=6432, ge=1024, le=65535, description="PgBouncer's port.")
    pool_mode: Literal["transaction"] = Field(
        default="transaction",
        description="Transaction pooling: what lets thousands of app connections share a few "
        "server connections.",
    )
    client_ranges: tuple[str, ...] = Field(
        min_length=1, description="CIDRs UFW lets reach PgBouncer (the app's subnet)."
    )
    databases: tuple[PoolerDatabase, ...] = Field(
        min_length=1, description="What PgBouncer pools: one pool per (database, user)."
    )
    clients: Clients = Field(
        default=Clients(
            max_instances=10, rollout_surge_percent=100, workers_per_instance=2, pool_per_worker=5
        ),
        description="The app side of the connection budget (instances, surge, workers, pool).",
    )
    max_client_conn: Int | None = Field(
        default=None, ge=1, description="Client limit; default: the budget's worst case."
    )
    default_pool_size: Int | None = Field(
        default=None,
        ge=1,
        description="Server connections per (database, user) pool; default: sized by the "
        "connection budget (the most Postgres fits, no more than the app's worst case uses).",
    )
    server_max_connections: Int = Field(
        default=100, ge=2, description="Postgres max_connections the pools must fit in."
    )
    reserved_connections: Int = Field(
        default=5, ge=0, description="Slots left for superusers and maintenance."
    )
    max_prepared_statements: Int = Field(
        default=200,
        ge=0,
        description="Prepared statements PgBouncer tracks per connection (PgBouncer >= 1.21; "
        "ignored before).",
    )
    local_postgres: bool = Field(
        default=False,
        description="Also install PostgreSQL on this host, bound to localhost (lab and dev).",
    )
    server_tls_sslmode: Literal[
        "disable", "allow", "prefer", "require", "verify-ca", "verify-full"
    ] = Field(
        default="prefer",
        description="TLS from PgBouncer to Postgres; a Postgres reached over the network needs "
        "require or stricter.",
    )

    @field_validator("listen_address")
    @classmethod
    def _private(cls, value: str) -> str:
        address = ipaddress.ip_address(check_address_text(value))
        if address.is_unspecified:
            raise ValueError("must be the host's private address, not 0.0.0.0 / ::")
        if address.is_global:
            raise ValueError(f"{value} is a public address: PgBouncer listens on a private one")
        return value

    @field_validator("client_ranges")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Written the way UFW prints them (a single host without /32), so the declared and
        the applied rules compare equal."""
        for cidr in value:
            if cidr == "any" or ipaddress.ip_network(cidr, strict=False).prefixlen == 0:
                raise ValueError(f"{cidr} opens PgBouncer to the whole internet")
        return tuple(ufw_source(cidr) for cidr in value)

    @model_validator(mode="after")
    def _budget(self) -> PgbouncerSettings:
        if self.max_client_conn is not None and self.max_client_conn < self.clients.worst_case:
            raise ValueError(
                f"max_client_conn {self.max_client_conn} is below the app's worst case "
                f"{self.clients.explain()}: raise it or shrink the app's pools"
            )
        if self.pool_size < 1:
            raise ValueError(
                f"{len(self.databases)} pool(s) do not fit max_connections "
                f"{self.server_max_connections} - {self.reserved_connections} reserved: raise "
                "server_max_connections or pool fewer databases"
            )
        for shortfall in self.budget.shortfalls:
            if shortfall.side == "servers":
                raise ValueError(f"{shortfall.detail}: lower default_pool_size")
        return self

    @model_validator(mode="after")
    def _tls(self) -> PgbouncerSettings:
        remote = [db for db in self.databases if db.over_network]
        if remote and self.server_tls_sslmode in ("disable", "allow", "prefer"):
            raise ValueError(
                f"server_tls_sslmode {self.server_tls_sslmode} would send {remote[0].name}'s "
                f"traffic to {remote[0].host} unencrypted: set it to require or verify-full"
            )
        return self

    @property
    def postgres(self) -> Postgres:
        return Postgres(self.server_max_connections, self.reserved_connections)

    @property
    def pool_size(self) -> int:
        """default_pool_size as declared, or as the connection budget sizes it."""
        if self.default_pool_size is not None:
            return self.default_pool_size
        return size_pools(self.clients, 1, len(self.databases), self.postgres)

    @property
    def budget(self) -> Budget:
        """The connection budget of this PgBouncer: the app's clients, its pools, Postgres."""
        pooler = Pooler(1, self.client_limit, len(self.databases), self.pool_size)
        return Budget(self.clients, pooler, self.postgres)

    @property
    def client_limit(self) -> int:
        return self.max_client_conn or self.clients.worst_case
