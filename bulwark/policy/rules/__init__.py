"""Every rule, registered on import, in the order the report lists them."""

from __future__ import annotations

from bulwark.policy.rules import cache, database, iam, network, service, stack
from bulwark.policy.rules.base import (
    RULES,
    Finding,
    NotApplicable,
    References,
    Resource,
    Rule,
    Severity,
)

__all__ = [
    "RULES",
    "Finding",
    "NotApplicable",
    "References",
    "Resource",
    "Rule",
    "Severity",
    "cache",
    "database",
    "iam",
    "network",
    "service",
    "stack",
]
