"""The pack through the engine's own data path: the real PolicyPack from policies/__main__.py,
pulumi_policy's analyzer servicer, protobuf requests (numbers as floats, lists and maps as the
SDK's proxies, unknowns as the engine's sentinels), each stack's pack config. Its verdicts must
be the offline audit's, for every stack and for every rule's violating fixture."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bulwark.audit import stack_section
from bulwark.cloud.plan import run_plan
from bulwark.policy.rules import RULES, NotApplicable, Resource

from .conftest import POLICIES_DIR, STACKS_DIR, as_resources
from .engine import Diagnostic, Engine, with_unknown
from .fixtures import ALWAYS_VIOLATING, GOOD, VIOLATIONS, resource
from .stack_fixtures import STACK_GOOD, STACK_VIOLATIONS

STACKS = ("dev", "staging", "prod")


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    return Engine(monkeypatch)


def violated(diagnostics: list[Diagnostic]) -> set[str]:
    return {d.policy for d in diagnostics if "during preview" not in d.message}


def test_the_pack_serves_every_rule_at_its_level(engine: Engine) -> None:
    info = engine.info()
    assert info.name == "bulwark"
    served = {p.name: p.enforcementLevel for p in info.policies}
    assert list(served) == RULES.ids()
    for rule in RULES:
        assert served[rule.id] == {"mandatory": 1, "advisory": 0}[rule.default_enforcement]


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_passes_the_engine_as_it_passes_the_audit(engine: Engine, stack: str) -> None:
    engine.configure(POLICIES_DIR / "config" / f"{stack}.json")
    resources = as_resources(run_plan(stack, STACKS_DIR))
    found = [d for r in resources for d in engine.analyze(r)] + engine.analyze_stack(resources)
    mandatory = [d for d in found if d.level == "mandatory"]
    assert not mandatory, [f"{d.policy}: {d.message}" for d in mandatory]
    section, _ = stack_section(stack, stacks_dir=STACKS_DIR, policies_dir=POLICIES_DIR)
    offline = {c.id for c in section.controls if c.status == "fail"}
    assert violated(found) == offline


RESOURCE_CASES = [
    (rule_id, type_token, changes)
    for rule_id, cases in VIOLATIONS.items()
    for type_token, changes in cases
]


@pytest.mark.parametrize(
    ("rule_id", "type_token", "changes"),
    RESOURCE_CASES,
    ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(RESOURCE_CASES)],
)
def test_every_violating_fixture_is_caught_by_the_engine_as_offline(
    engine: Engine, rule_id: str, type_token: str, changes: dict[str, object]
) -> None:
    res = resource(type_token, changes)
    engine.configure(POLICIES_DIR / "config" / "prod.json")
    offline = RULES[rule_id].check(res)  # type: ignore[misc]
    assert not isinstance(offline, NotApplicable)
    assert offline, "the offline check must catch its own fixture"
    assert rule_id in violated(engine.analyze(res))


@pytest.mark.parametrize("type_token", sorted(set(GOOD) - ALWAYS_VIOLATING))
def test_compliant_fixtures_pass_the_engine(engine: Engine, type_token: str) -> None:
    engine.configure(POLICIES_DIR / "config" / "prod.json")
    assert violated(engine.analyze(resource(type_token))) == set()


STACK_CASES = [(rule_id, make) for rule_id, makers in STACK_VIOLATIONS.items() for make in makers]


@pytest.mark.parametrize(
    ("rule_id", "make"), STACK_CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(STACK_CASES)]
)
def test_every_violating_stack_is_caught_by_the_engine_as_offline(
    engine: Engine, rule_id: str, make: Callable[[], list[Resource]]
) -> None:
    engine.configure(POLICIES_DIR / "config" / "prod.json")
    resources = make()
    offline = RULES[rule_id].stack_check(resources, {})  # type: ignore[misc]
    assert offline
    assert not isinstance(offline, NotApplicable)
    assert rule_id in violated(engine.analyze_stack(resources))


@pytest.mark.parametrize("make", STACK_GOOD, ids=lambda m: m.__name__)
def test_compliant_stacks_pass_the_engine(
    engine: Engine, make: Callable[[], list[Resource]]
) -> None:
    engine.configure(POLICIES_DIR / "config" / "prod.json")
    assert violated(engine.analyze_stack(make())) == set()


def test_the_pack_configs_numbers_arrive_as_floats_and_still_count(engine: Engine) -> None:
    """surge 100 and reserved 10 arrive as 100.0 and 10.0: the budget must still count them
    (a plan that fits only with surge 0 must fail)."""
    engine.configure(POLICIES_DIR / "config" / "prod.json")
    # 100 instances x 2 (surge) x 2 workers x 5 = 2000 > 2 x 500 clients; with the surge read
    # as 0 (what int("100.0") failing made of it), 1000 would fit.
    tight = STACK_VIOLATIONS["connection-budget-fits"][0]()
    found = [d for d in engine.analyze_stack(tight) if d.policy == "connection-budget-fits"]
    assert found, "a budget that fits only without the rollout surge must fail"
    assert all("cannot compute" not in d.message for d in found), found
    assert violated(engine.analyze_stack(STACK_GOOD[0]())) == set()


@pytest.mark.parametrize(
    ("rule_id", "type_token", "path"),
    [
        ("run-bounded-scaling", "gcp:cloudrunv2/service:Service",
         "template.scaling.maxInstanceCount"),
        ("sql-no-public-ip", "gcp:sql/databaseInstance:DatabaseInstance",
         "settings.ipConfiguration.ipv4Enabled"),
        ("sql-tls-required", "gcp:sql/databaseInstance:DatabaseInstance",
         "settings.ipConfiguration.sslMode"),
    ],
)  # fmt: skip
def test_an_unknown_value_is_undecided_never_a_pass_or_a_failure(
    engine: Engine, rule_id: str, type_token: str, path: str
) -> None:
    engine.configure(POLICIES_DIR / "config" / "prod.json")
    found = engine.analyze(with_unknown(resource(type_token), path))
    mine = [d for d in found if d.policy == rule_id]
    assert len(mine) == 1, found
    assert mine[0].level == "advisory"
    assert "during preview" in mine[0].message
    assert rule_id not in violated(found)


@pytest.mark.parametrize(
    ("rule_id", "path"),
    [
        ("connection-budget-fits", "template.scaling.maxInstanceCount"),
        # An output of the service account resource: unknown in every first preview.
        ("runtime-sa-dedicated", "template.serviceAccount"),
    ],
)
def test_a_stack_rule_on_an_unknown_value_is_undecided(
    engine: Engine, rule_id: str, path: str
) -> None:
    engine.configure(POLICIES_DIR / "config" / "prod.json")
    resources = [
        with_unknown(r, path) if r.type == "gcp:cloudrunv2/service:Service" else r
        for r in STACK_GOOD[0]()
    ]
    found = engine.analyze_stack(resources)
    mine = [d for d in found if d.policy == rule_id]
    assert len(mine) == 1, found
    assert mine[0].level == "advisory"
    assert "during preview" in mine[0].message
    assert rule_id not in violated(found)
