"""Every rule, registered on import, in the order the report lists them: the database first,
then the service, cache, identity, network, and the stack rules last."""

# isort: skip_file
from __future__ import annotations

from bulwark.policy.rules import database, service, cache, iam, network, stack
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
