"""The CrossGuard adapter, exercised by calling its validators with constructed arguments
(never by importing policies/__main__.py: PolicyPack(...) serves forever)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from bulwark.policy.crossguard import policies, resource_validator, stack_of, stack_validator
from bulwark.policy.rules import RULES, Resource
from bulwark.policy.rules import types as t
from bulwark.policy.waivers import Waiver

from .fixtures import resource
from .stack_fixtures import managed_stack

ROOT = Path(__file__).resolve().parents[2]
OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _args(res: Resource, config: dict[str, object] | None = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(res.type, res.props, res.urn, res.name, OPTS, None, config)


def _stack_args(
    resources: list[Resource], config: dict[str, object] | None = None
) -> StackValidationArgs:
    return StackValidationArgs(
        [
            PolicyResource(r.type, r.props, r.urn, r.name, OPTS, None, None, [], {})
            for r in resources
        ],
        config,
    )


class Reports:
    def __init__(self) -> None:
        self.violations: list[tuple[str, str | None]] = []

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.violations.append((message, urn))


def test_one_policy_per_rule_with_metadata() -> None:
    built = policies()
    assert [p.name for p in built] == RULES.ids()
    by_name = {p.name: p for p in built}
    sql = by_name["sql-no-public-ip"]
    assert isinstance(sql, ResourceValidationPolicy)
    assert sql.enforcement_level == EnforcementLevel.MANDATORY
    assert sql.severity == Severity.CRITICAL
    assert sql.framework is not None
    assert sql.framework.reference == "6.6"
    assert sql.remediation_steps
    assert isinstance(by_name["connection-budget-fits"], StackValidationPolicy)
    assert by_name["connection-budget-fits"].config_schema is None  # inputs come from resources
    assert by_name["wif-repository-id-pinned"].enforcement_level == EnforcementLevel.ADVISORY
    levels = {"sql-no-public-ip": EnforcementLevel.DISABLED}
    assert {p.name: p for p in policies(levels=levels)}["sql-no-public-ip"].enforcement_level == (
        EnforcementLevel.DISABLED
    )


def test_resource_validator_reports_violations_with_fix_and_reference() -> None:
    validate = resource_validator(RULES["sql-no-public-ip"])
    ok, bad = Reports(), Reports()
    validate(_args(resource(t.SQL_INSTANCE)), ok)
    validate(_args(resource(t.SQL_INSTANCE, {"settings.ipConfiguration.ipv4Enabled": True})), bad)
    assert ok.violations == []
    ((message, _),) = bad.violations
    assert "set it to false" in message
    assert message.endswith("[CIS GCP v4 6.6, CKV_GCP_60]")


def test_resource_validator_ignores_other_types() -> None:
    reports = Reports()
    resource_validator(RULES["sql-no-public-ip"])(_args(resource(t.REDIS_INSTANCE)), reports)
    assert reports.violations == []


def test_not_applicable_is_told_to_crossguard() -> None:
    dev = resource(
        t.SQL_INSTANCE,
        {"settings.userLabels": {"env": "dev"}, "settings.availabilityType": "ZONAL"},
    )
    args = _args(dev)
    reasons: list[str | None] = []
    args.not_applicable = reasons.append  # type: ignore[method-assign,assignment]
    reports = Reports()
    resource_validator(RULES["sql-ha-in-prod"])(args, reports)
    assert reports.violations == []
    assert reasons == ["environment dev: high availability is required in prod"]


def test_stack_validator_sees_every_resource_and_reads_config() -> None:
    validate = stack_validator(RULES["connection-budget-fits"])
    ok, tight = Reports(), Reports()
    validate(_stack_args(managed_stack(), {}), ok)
    reserve_more = managed_stack(sql={"settings.userLabels.bulwark-reserved-connections": "20"})
    validate(_stack_args(reserve_more, {}), tight)
    assert ok.violations == []
    ((message, urn),) = tight.violations
    assert "exceed Postgres' 780 usable" in message
    assert urn is None


def test_stack_validator_names_the_resource() -> None:
    stack = managed_stack(
        run={"template.containers.0.envs.2": {"name": "DB_PREPARE_THRESHOLD", "value": "5"}}
    )
    reports = Reports()
    stack_validator(RULES["driver-prepared-statements-safe"])(_stack_args(stack), reports)
    ((_, urn),) = reports.violations
    assert urn == stack[1].urn


def _waiver(expires: dt.date) -> Waiver:
    return Waiver(
        rule="sql-no-public-ip",
        stack="prod",
        resource="r",
        owner="platform@acme.example",
        reason="Migration window, public IP closed after cutover.",
        expires=expires,
    )


@pytest.mark.parametrize(
    ("today", "reported"), [(dt.date(2026, 12, 1), False), (dt.date(2027, 1, 2), True)]
)
def test_waivers_apply_under_crossguard_too(today: dt.date, reported: bool) -> None:
    waivers = [_waiver(dt.date(2027, 1, 1))]
    validate = resource_validator(RULES["sql-no-public-ip"], waivers, lambda: today)
    reports = Reports()
    public = resource(t.SQL_INSTANCE, {"settings.ipConfiguration.ipv4Enabled": True})
    assert stack_of(public.urn) == "prod"
    validate(_args(public), reports)
    assert bool(reports.violations) == reported
    if reported:
        assert "expired on 2027-01-01" in reports.violations[0][0]


def test_the_pack_is_wiring_only() -> None:
    main = (ROOT / "policies" / "__main__.py").read_text()
    assert "PolicyPack(" in main
    assert "def " not in main
