"""Connection budget: Cloud Run x workers x pool vs the pooler vs Postgres (pure arithmetic).

Three limits meet at the pooler. Clients: every Cloud Run instance runs some worker processes,
each with its own connection pool, and during a rollout the old revision keeps its instances
while the new one scales up. Those clients must fit the pooler's client limit. Servers: each
pooler keeps one server pool per (database, user) pair, and all of them together must fit the
Postgres `max_connections` minus the slots reserved for superusers and Cloud SQL's own agents.

The stack sizes the pooler's server pools with `size_pools` and refuses a config for which
`check` reports a shortfall; a stack-level policy reads the same numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

# Cloud SQL for PostgreSQL's default max_connections by instance memory (GB, upper bound
# exclusive, value), from Google's "Maximum concurrent connections" table.
_MAX_CONNECTIONS_BY_MEMORY: tuple[tuple[float, int], ...] = (
    (0.61, 25),  # db-f1-micro, 0.6 GB
    (3.75, 50),  # db-g1-small 1.7 GB and other small shapes
    (6.0, 100),
    (7.5, 200),
    (15.0, 400),
    (30.0, 500),
    (60.0, 600),
    (120.0, 800),
)
_MAX_CONNECTIONS_LARGEST = 1000

# Enterprise Plus performance-optimized tiers have 8 GB of memory per vCPU.
_PERF_OPTIMIZED = re.compile(r"^db-perf-optimized-N-(\d+)$")
_CUSTOM = re.compile(r"^db-custom-(\d+)-(\d+)$")
_SHARED_CORE = {"db-f1-micro": (1, 0.6), "db-g1-small": (1, 1.7)}


@dataclass(frozen=True)
class Tier:
    """What the budget needs to know about a Cloud SQL machine tier."""

    name: str
    vcpus: int
    memory_gb: float

    @property
    def default_max_connections(self) -> int:
        for bound, connections in _MAX_CONNECTIONS_BY_MEMORY:
            if self.memory_gb < bound:
                return connections
        return _MAX_CONNECTIONS_LARGEST

    @property
    def managed_poolers(self) -> int:
        """Managed connection pooling runs one pooler per 4 vCPUs, at least one."""
        return max(1, self.vcpus // 4)


def parse_tier(name: str) -> Tier | None:
    """The vCPUs and memory of a tier name, or None for a name this module does not know."""
    if match := _PERF_OPTIMIZED.match(name):
        vcpus = int(match[1])
        return Tier(name, vcpus, vcpus * 8.0)
    if match := _CUSTOM.match(name):
        return Tier(name, int(match[1]), int(match[2]) / 1024)
    if name in _SHARED_CORE:
        vcpus, memory = _SHARED_CORE[name]
        return Tier(name, vcpus, memory)
    return None


@dataclass(frozen=True)
class Clients:
    """The application side: how many connections Cloud Run can open at worst."""

    max_instances: int
    rollout_surge_percent: int
    workers_per_instance: int
    pool_per_worker: int

    @property
    def surge_instances(self) -> int:
        return math.ceil(self.max_instances * self.rollout_surge_percent / 100)

    @property
    def instances(self) -> int:
        return self.max_instances + self.surge_instances

    @property
    def worst_case(self) -> int:
        return self.instances * self.workers_per_instance * self.pool_per_worker

    def explain(self) -> str:
        return (
            f"{self.worst_case} = ({self.max_instances} instances + {self.surge_instances} "
            f"rollout surge) x {self.workers_per_instance} workers x {self.pool_per_worker} "
            "per-process pool"
        )


@dataclass(frozen=True)
class Pooler:
    """The pooler: how many poolers, their client limit, and their server pools."""

    poolers: int
    client_limit: int
    pools: int
    pool_size: int

    @property
    def client_capacity(self) -> int:
        return self.poolers * self.client_limit

    @property
    def server_connections(self) -> int:
        return self.poolers * self.pools * self.pool_size

    def explain_servers(self) -> str:
        return (
            f"{self.server_connections} = {self.poolers} pooler(s) x {self.pools} pool(s) x "
            f"{self.pool_size} server connections"
        )


@dataclass(frozen=True)
class Postgres:
    """The database side: max_connections and the slots the pooler must leave alone."""

    max_connections: int
    reserved: int

    @property
    def usable(self) -> int:
        return self.max_connections - self.reserved


@dataclass(frozen=True)
class Shortfall:
    """One limit the worst case does not fit: which side, the numbers, and the arithmetic."""

    side: Literal["clients", "servers"]
    needed: int
    available: int
    detail: str


@dataclass(frozen=True)
class Budget:
    """The three sides together, with every shortfall found."""

    clients: Clients
    pooler: Pooler
    postgres: Postgres

    @property
    def shortfalls(self) -> tuple[Shortfall, ...]:
        found = []
        if self.clients.worst_case > self.pooler.client_capacity:
            found.append(
                Shortfall(
                    "clients",
                    self.clients.worst_case,
                    self.pooler.client_capacity,
                    f"worst case {self.clients.explain()} client connections exceed the "
                    f"pooler's {self.pooler.client_capacity} ({self.pooler.poolers} pooler(s) x "
                    f"{self.pooler.client_limit})",
                )
            )
        if self.pooler.server_connections > self.postgres.usable:
            found.append(
                Shortfall(
                    "servers",
                    self.pooler.server_connections,
                    self.postgres.usable,
                    f"pooler server connections {self.pooler.explain_servers()} exceed "
                    f"Postgres' {self.postgres.usable} usable (max_connections "
                    f"{self.postgres.max_connections} - {self.postgres.reserved} reserved)",
                )
            )
        return tuple(found)

    @property
    def fits(self) -> bool:
        return not self.shortfalls

    def as_dict(self) -> dict[str, object]:
        return {
            "clients": {
                "max_instances": self.clients.max_instances,
                "surge_instances": self.clients.surge_instances,
                "workers_per_instance": self.clients.workers_per_instance,
                "pool_per_worker": self.clients.pool_per_worker,
                "worst_case": self.clients.worst_case,
            },
            "pooler": {
                "poolers": self.pooler.poolers,
                "client_limit": self.pooler.client_limit,
                "client_capacity": self.pooler.client_capacity,
                "pools": self.pooler.pools,
                "pool_size": self.pooler.pool_size,
                "server_connections": self.pooler.server_connections,
            },
            "postgres": {
                "max_connections": self.postgres.max_connections,
                "reserved": self.postgres.reserved,
                "usable": self.postgres.usable,
            },
            "fits": self.fits,
        }


def size_pools(clients: Clients, poolers: int, pools: int, postgres: Postgres) -> int:
    """The server pool size: the most that fits Postgres, never more than the clients can use.

    Clients spread over the poolers, so one pooler's pool never needs more server connections
    than its share of the worst case. Returns 0 when even one connection per pool does not fit.
    """
    fits_postgres = postgres.usable // (poolers * pools) if postgres.usable > 0 else 0
    useful = math.ceil(clients.worst_case / poolers)
    return max(0, min(fits_postgres, useful))
