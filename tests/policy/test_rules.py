"""Every rule passes its compliant fixture and fails each of its violating fixtures, with a
message that names the fix; the metadata an auditor reads is complete."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bulwark.policy.rules import RULES, Finding, NotApplicable, Resource, Rule
from bulwark.policy.rules import types as t
from bulwark.policy.rules.base import ID_RE, SEVERITIES
from bulwark.policy.rules.iam import conjuncts
from bulwark.pooling.keys import RESERVED_LABEL, SURGE_LABEL

from .fixtures import ALWAYS_VIOLATING, GOOD, VIOLATIONS, resource
from .stack_fixtures import STACK_GOOD, STACK_VIOLATIONS

RESOURCE_RULES = [r for r in RULES if r.scope == "resource"]
STACK_RULES = [r for r in RULES if r.scope == "stack"]
FIX_WORDS = ("set", "use", "remove", "add", "grant", "enable", "create", "give", "move", "keep",
             "narrow", "declare", "attach", "raise", "fix", "renew", "lower")  # fmt: skip


def _says_how_to_fix(message: str) -> bool:
    parts = message.split(": ")[1:]
    return any(part.split()[0] in FIX_WORDS for part in parts if part.split())


def test_there_are_at_least_40_rules_with_unique_kebab_ids() -> None:
    assert len(RULES) >= 40
    assert all(ID_RE.match(rule.id) for rule in RULES)


@pytest.mark.parametrize("rule", list(RULES), ids=lambda r: r.id)
def test_metadata_is_complete(rule: Rule) -> None:
    assert rule.title
    assert rule.rationale
    assert rule.remediation
    assert rule.severity in SEVERITIES
    assert rule.family
    assert (rule.check is None) != (rule.stack_check is None)
    if rule.scope == "resource":
        assert rule.types
        assert all(tok.count(":") == 2 for tok in rule.types)


def test_every_rule_has_a_violating_fixture() -> None:
    covered = set(VIOLATIONS) | set(STACK_VIOLATIONS)
    assert covered == set(RULES.ids())


@pytest.mark.parametrize("rule", RESOURCE_RULES, ids=lambda r: r.id)
def test_compliant_fixture_passes(rule: Rule) -> None:
    assert rule.check is not None
    types = [tok for tok in rule.types if tok in GOOD and tok not in ALWAYS_VIOLATING]
    if not types:
        # The type's mere presence violates (e.g. a user-managed service account key): the
        # compliant case is a stack without it, as the real stacks are (tested in the audit).
        assert set(rule.types) <= set(ALWAYS_VIOLATING), rule.id
        return
    for tok in types:
        assert rule.check(resource(tok)) == [], tok


@pytest.mark.parametrize(
    ("rule_id", "case"),
    [(rid, case) for rid, cases in VIOLATIONS.items() for case in cases],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_violating_fixture_fails_with_a_fix(
    rule_id: str, case: tuple[str, dict[str, object]]
) -> None:
    rule = RULES[rule_id]
    assert rule.check is not None
    type_token, changes = case
    result = rule.check(resource(type_token, changes))
    assert not isinstance(result, NotApplicable)
    assert result, f"{rule_id} passed {changes}"
    for message in result:
        assert _says_how_to_fix(message), message


def test_violations_break_only_their_own_rule() -> None:
    """A fixture that trips other rules too would hide a rule that never fires on its own."""
    for rule_id, cases in VIOLATIONS.items():
        for type_token, changes in cases:
            res = resource(type_token, changes)
            tripped = {
                r.id for r in RESOURCE_RULES
                if type_token in r.types and r.check is not None
                and not isinstance(found := r.check(res), NotApplicable) and found
            }  # fmt: skip
            assert rule_id in tripped
            overlapping = {"iam-no-public-members", "run-no-public-invoker"}
            assert tripped <= {rule_id, *overlapping}, (rule_id, tripped)


def test_prod_only_rules_do_not_apply_elsewhere() -> None:
    dev = resource(
        "gcp:sql/databaseInstance:DatabaseInstance",
        {"settings.userLabels": {"env": "dev"}, "settings.availabilityType": "ZONAL"},
    )
    check = RULES["sql-ha-in-prod"].check
    assert check is not None
    assert isinstance(check(dev), NotApplicable)


@pytest.mark.parametrize("make", STACK_GOOD, ids=lambda make: make.__name__)
@pytest.mark.parametrize("rule", STACK_RULES, ids=lambda r: r.id)
def test_compliant_stack_passes(rule: Rule, make: Callable[[], list[Resource]]) -> None:
    assert rule.stack_check is not None
    verdict = rule.stack_check(make(), {})
    assert verdict == [] or isinstance(verdict, NotApplicable)


@pytest.mark.parametrize(
    ("rule_id", "make"),
    [(rid, make) for rid, makes in STACK_VIOLATIONS.items() for make in makes],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_violating_stack_fails_with_a_fix(rule_id: str, make: Callable[[], list[Resource]]) -> None:
    check = RULES[rule_id].stack_check
    assert check is not None
    result = check(make(), {})
    assert not isinstance(result, NotApplicable)
    assert result, rule_id
    for finding in result:
        assert isinstance(finding, Finding)
        assert _says_how_to_fix(finding.message), finding.message


def test_budget_reads_the_surge_and_reserved_slots_from_the_resources() -> None:
    from .stack_fixtures import managed_stack  # noqa: PLC0415

    check = RULES["connection-budget-fits"].stack_check
    assert check is not None
    assert check(managed_stack(), {}) == []
    # prod's pools use every usable slot: reserving more no longer fits...
    tight = managed_stack(sql={f"settings.userLabels.{RESERVED_LABEL}": "20"})
    (finding,) = check(tight, {})  # type: ignore[misc]
    assert "exceed Postgres' 780 usable" in finding.message
    # ... and a smaller surge leaves room for more instances.
    more = {"template.scaling.maxInstanceCount": 250}  # (250 + 250) x 2 x 5 > 2 x 2000
    assert check(managed_stack(run=more), {})
    assert check(managed_stack(run={**more, f"labels.{SURGE_LABEL}": "50"}), {}) == []
    # The policy config no longer moves the budget: the resources are the only source.
    assert check(managed_stack(), {"reserved_connections": 20}) == []


@pytest.mark.parametrize(
    "label",
    ["labels.bulwark-rollout-surge-percent", "settings.userLabels.bulwark-reserved-connections"],
)
def test_a_budget_input_missing_from_the_resources_is_a_finding_not_a_default(label: str) -> None:
    from .fixtures import DELETE  # noqa: PLC0415
    from .stack_fixtures import managed_stack  # noqa: PLC0415

    check = RULES["connection-budget-fits"].stack_check
    assert check is not None
    where = "run" if label.startswith("labels.") else "sql"
    (finding,) = check(managed_stack(**{where: {label: DELETE}}), {})  # type: ignore[misc]
    assert "cannot compute the connection budget" in finding.message
    assert label.rsplit(".", 1)[1] in finding.message


def test_readme_rules_table_is_generated_from_the_metadata() -> None:
    from pathlib import Path  # noqa: PLC0415

    from bulwark.policy.docs import rules_table  # noqa: PLC0415

    page = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    assert rules_table() in page, "docs/policy.md is stale: paste `bulwark audit --list-rules`"


def test_a_conditioned_grant_of_harmless_roles_and_a_human_admin_are_not_escalation() -> None:
    check = RULES["iam-no-owner-escalation"].check
    assert check is not None
    admin = {"role": "roles/resourcemanager.projectIamAdmin"}

    def grant(**changes: object) -> Resource:
        return resource(t.PROJECT_IAM_MEMBER, {**admin, **changes})

    limited = (
        "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"
        ".hasOnly(['roles/logging.logWriter', 'roles/monitoring.metricWriter'])"
    )
    assert check(grant(condition={"title": "t", "expression": limited})) == []
    assert check(grant(member="user:ops@acme.example")) == []
    timed = "request.time < timestamp('2030-01-01T00:00:00Z')"
    assert check(grant(condition={"title": "t", "expression": timed}))


@pytest.mark.parametrize(
    ("condition", "parts"),
    [
        ("a == 'x' && b == 'y'", ["a == 'x'", "b == 'y'"]),
        ("(a == 'x' && b == 'y')", ["a == 'x'", "b == 'y'"]),
        ("a == 'x' && (b == 'y' || c == 'z')", ["a == 'x'", "(b == 'y' || c == 'z')"]),
        ("a == 'x' || b == 'y'", []),  # nothing holds for every token
        ("a == 'x' && b == 'y' || true", []),  # && binds tighter: the || is top-level
        ("(a == 'x') || (b == 'y')", []),
        ("a == 'x && y' && b == 'it''s'", ["a == 'x && y'", "b == 'it''s'"]),  # quotes
        ("a == '||' && b in ['p', 'q']", ["a == '||'", "b in ['p', 'q']"]),
        ("", [""]),
    ],
)
def test_conjuncts_are_the_clauses_every_admitted_token_meets(
    condition: str, parts: list[str]
) -> None:
    assert conjuncts(condition) == parts
