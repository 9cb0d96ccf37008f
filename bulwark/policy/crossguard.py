"""CrossGuard adapter: the same rules as `ResourceValidationPolicy` / `StackValidationPolicy`
objects for `pulumi preview --policy-pack policies`.

Validators are thin: build a `Resource` from the args, call the rule's pure check, report
each violation with its fix and references. Waivers apply here too (the stack is in every
URN): an unexpired waiver silences its violation, an expired one is reported as such.
Enforcement defaults come from the rule; per-stack levels and the budget's assumptions come
from `--policy-pack-config policies/config/<stack>.json`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyComplianceFramework,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from bulwark.policy.rules import RULES, NotApplicable, Resource, Rule
from bulwark.policy.rules.values import Props
from bulwark.policy.waivers import Waiver

CIS = "CIS Google Cloud Platform Foundation Benchmark"
CIS_VERSION = "4.0.0"


def stack_of(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> the stack."""
    return urn.split("::", maxsplit=1)[0].removeprefix("urn:pulumi:")


def _waiver_note(
    rule: Rule, name: str, urn: str | None, waivers: Sequence[Waiver], today: dt.date
) -> str | None:
    """None when an unexpired waiver covers the violation; otherwise '' or the expiry note."""
    for waiver in waivers:
        if urn and waiver.stack == stack_of(urn) and waiver.matches(rule.id, name, urn):
            if waiver.expired(today):
                return (f" (waiver by {waiver.owner} expired on {waiver.expires.isoformat()}: "
                        "renew it in policies/waivers.yaml or fix the resource)")  # fmt: skip
            return None
    return ""


def _framework(rule: Rule) -> PolicyComplianceFramework | None:
    if not rule.references.cis:
        return None
    return PolicyComplianceFramework(name=CIS, version=CIS_VERSION, reference=rule.references.cis)


def _common(rule: Rule, level: EnforcementLevel | None) -> dict[str, Any]:
    return {
        "name": rule.id,
        "description": f"{rule.title}. {rule.rationale}",
        "enforcement_level": level or EnforcementLevel(rule.default_enforcement),
        "display_name": rule.title,
        "severity": Severity(rule.severity),
        "framework": _framework(rule),
        "tags": [rule.family, rule.references.label],
        "remediation_steps": rule.remediation,
    }


def resource_validator(
    rule: Rule, waivers: Sequence[Waiver] = (), today: Callable[[], dt.date] = dt.date.today
) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    """The validator of a resource rule: `(args, report_violation)`, pure apart from reporting."""
    check = rule.check
    assert check is not None

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.types:
            return
        result = check(Resource(args.resource_type, args.name, args.urn, args.props))
        if isinstance(result, NotApplicable):
            args.not_applicable(result.reason)
            return
        for message in result:
            note = _waiver_note(rule, args.name, args.urn, waivers, today())
            if note is not None:
                report_violation(f"{args.name}: {message}{note} [{rule.references.label}]", None)

    return validate


def stack_validator(
    rule: Rule, waivers: Sequence[Waiver] = (), today: Callable[[], dt.date] = dt.date.today
) -> Callable[[StackValidationArgs, ReportViolation], None]:
    """The validator of a stack rule over every resource CrossGuard hands over."""
    check = rule.stack_check
    assert check is not None

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [Resource(r.resource_type, r.name, r.urn, r.props) for r in args.resources]
        names = {r.urn: r.name for r in resources}
        result = check(resources, Props(args.get_config() or {}))
        if isinstance(result, NotApplicable):
            args.not_applicable(result.reason)
            return
        for finding in result:
            name = names.get(finding.urn or "", "stack")
            note = _waiver_note(rule, name, finding.urn, waivers, today())
            if note is not None:
                report_violation(f"{finding.message}{note} [{rule.references.label}]", finding.urn)

    return validate


def policies(
    waivers: Sequence[Waiver] = (),
    levels: dict[str, EnforcementLevel] | None = None,
    today: Callable[[], dt.date] = dt.date.today,
) -> list[Policy]:
    """One CrossGuard policy per rule, in rule order."""
    levels = levels or {}
    built: list[Policy] = []
    for rule in RULES:
        common = _common(rule, levels.get(rule.id))
        if rule.scope == "stack":
            built.append(StackValidationPolicy(validate=stack_validator(rule, waivers, today),
                                               **common))  # fmt: skip
        else:
            built.append(ResourceValidationPolicy(validate=resource_validator(rule, waivers, today),
                                                  **common))  # fmt: skip
    return built
