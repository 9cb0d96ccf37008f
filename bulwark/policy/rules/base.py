"""What a rule is: metadata an auditor reads, and a pure check over a resource or a stack.

A resource rule sees one resource's type token and properties (camelCase keys, as CrossGuard
and `bulwark plan` both hand them over) and returns the violations it found, each a message
that says what is wrong and how to fix it, or `NotApplicable` with the reason. A stack rule sees
every resource at once. Nothing here touches Pulumi: the CrossGuard adapter and the offline
evaluator both call these functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bulwark.policy.rules.values import Props

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
ID_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")


@dataclass(frozen=True)
class Resource:
    """One resource as the rules see it: type token, logical name, URN and properties."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]

    def __post_init__(self) -> None:
        # Whatever the engine or the mock run handed over, rules read it one way (values.py).
        if not isinstance(self.props, Props):
            object.__setattr__(self, "props", Props(self.props))

    def get(self, path: str) -> Any:
        """The property at a dotted camelCase path, or None; a number selects a list item."""
        value: Any = self.props
        for part in path.split("."):
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, Sequence) and not isinstance(value, str) and part.isdigit():
                value = value[int(part)] if int(part) < len(value) else None
            else:
                return None
        return value

    def items(self, path: str) -> list[Any]:
        """The list at `path` ([] when unset), for properties that are lists of objects."""
        value = self.get(path)
        if isinstance(value, Sequence) and not isinstance(value, str):
            return list(value)
        return []

    @property
    def labels(self) -> Mapping[str, str]:
        """Labels wherever the type keeps them (`labels`, or Cloud SQL's `settings.userLabels`)."""
        for path in ("labels", "settings.userLabels"):
            value = self.get(path)
            if isinstance(value, Mapping):
                return value
        return {}

    @property
    def environment(self) -> str | None:
        """The stack environment (label `env`), so prod-only rules know where they run."""
        env = self.labels.get("env")
        return env if isinstance(env, str) else None


@dataclass(frozen=True)
class NotApplicable:
    """The rule does not apply to this resource or stack, and why."""

    reason: str


@dataclass(frozen=True)
class Finding:
    """A stack rule's violation: the message, and the resource it is about (None: the stack)."""

    message: str
    urn: str | None = None


ResourceCheck = Callable[[Resource], "Sequence[str] | NotApplicable"]
StackCheck = Callable[
    [Sequence[Resource], Mapping[str, object]], "Sequence[Finding] | NotApplicable"
]


@dataclass(frozen=True)
class References:
    """Where a rule comes from: a CIS GCP Foundations v4 section, a checkov id, or ours."""

    cis: str | None = None
    checkov: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("cis", self.cis), ("checkov", self.checkov)) if v}

    @property
    def label(self) -> str:
        parts = []
        if self.cis:
            parts.append(f"CIS GCP v4 {self.cis}")
        if self.checkov:
            parts.append(self.checkov)
        return ", ".join(parts) or "bulwark"


@dataclass(frozen=True)
class Rule:
    """One control: stable id, what it wants, why, how to fix, where it comes from."""

    id: str
    title: str
    severity: Severity
    rationale: str
    remediation: str
    references: References
    family: str
    types: tuple[str, ...] = ()  # resource types; empty for a stack rule
    check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    default_enforcement: Literal["mandatory", "advisory"] = "mandatory"
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def scope(self) -> Literal["resource", "stack"]:
        return "stack" if self.stack_check is not None else "resource"


class Registry:
    """Rules in declaration order, by id; decorators register checks with their metadata."""

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}

    def __iter__(self) -> Any:
        return iter(self._rules.values())

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._rules

    def __getitem__(self, rule_id: str) -> Rule:
        return self._rules[rule_id]

    def ids(self) -> list[str]:
        return list(self._rules)

    def _add(self, rule: Rule) -> None:
        if not ID_RE.match(rule.id):
            raise ValueError(f"rule id {rule.id!r} is not kebab-case")
        if rule.id in self._rules:
            raise ValueError(f"rule id {rule.id!r} registered twice")
        self._rules[rule.id] = rule

    def resource(
        self,
        rule_id: str,
        *,
        types: str | tuple[str, ...],
        title: str,
        severity: Severity,
        family: str,
        rationale: str,
        remediation: str,
        cis: str | None = None,
        checkov: str | None = None,
        enforcement: Literal["mandatory", "advisory"] = "mandatory",
    ) -> Callable[[ResourceCheck], ResourceCheck]:
        def register(check: ResourceCheck) -> ResourceCheck:
            self._add(
                Rule(
                    rule_id,
                    title,
                    severity,
                    rationale,
                    remediation,
                    References(cis, checkov),
                    family,
                    (types,) if isinstance(types, str) else types,
                    check=check,
                    default_enforcement=enforcement,
                )
            )
            return check

        return register

    def stack(
        self,
        rule_id: str,
        *,
        title: str,
        severity: Severity,
        family: str,
        rationale: str,
        remediation: str,
        cis: str | None = None,
        checkov: str | None = None,
        enforcement: Literal["mandatory", "advisory"] = "mandatory",
    ) -> Callable[[StackCheck], StackCheck]:
        def register(check: StackCheck) -> StackCheck:
            self._add(
                Rule(
                    rule_id,
                    title,
                    severity,
                    rationale,
                    remediation,
                    References(cis, checkov),
                    family,
                    stack_check=check,
                    default_enforcement=enforcement,
                )
            )
            return check

        return register


RULES = Registry()


def flag_value(resource: Resource, flag: str) -> str | None:
    """A Cloud SQL database flag's value (`settings.databaseFlags`), or None when unset."""
    for item in resource.items("settings.databaseFlags"):
        if isinstance(item, Mapping) and item.get("name") == flag:
            value = item.get("value")
            return None if value is None else str(value)
    return None


def env_of(resource: Resource) -> str:
    return resource.environment or "unknown"
